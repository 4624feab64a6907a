# Experiment 3's test of the author's explanation of the overfitting without the mask: the loss covers
# every x position, and each can read the y that follows it. With the loss on the query alone there is
# nothing to read, so the gap should close. Equal steps (equal compute), a 21st of the supervised
# targets; learned PE with the mask is the control. The loss_on=all runs are config/exp3_small_grid.py's
# (the same directories: a sweep of either grid skips what the other finished).
#   python sweep.py config/exp3_small_query_grid.py --out_dir=results/exp3_small --jobs=2
# Plain assignments, read by sweep.py.

experiment = 'exp3_small'                  # figures go to figures/exp3_small/loss_on/
configs = ['config/exp3_small.py']
flags = {'n_loops': 5}

extra = [{'pos_emb': pe, 'causal': causal, 'loss_on': loss}
         for pe, causal in (('learned', False), ('sinusoidal', False), ('learned', True))
         for loss in ('all', 'query')]
seeds = [42, 451, 1984]

eval_flags = ['--max_loops=50']            # 10 x b_train, as config/exp3_small_grid.py's

labels = {f'pos_emb={v["pos_emb"]}, causal={v["causal"]}, loss_on={v["loss_on"]}':
          f'{v["pos_emb"]} PE, {"mask" if v["causal"] else "no mask"}, loss on '
          f'{"all" if v["loss_on"] == "all" else "the query"}' for v in extra}

plots = {'loss_on': 'all'}
