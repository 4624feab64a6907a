# Experiment 3 on a 2-core CPU: positional encoding x causal mask at b = 5 and b = 1, d = 5, N = 20
# (config/exp3_small.py), three seeds. Results: results/exp3_small/; the loss on the query alone is
# config/exp3_small_query_grid.py.
#   python sweep.py config/exp3_small_grid.py --out_dir=results/exp3_small --jobs=2
# Plain assignments, read by sweep.py.

experiment = 'exp3_small'                  # figures go to figures/exp3_small/<plot>/
configs = ['config/exp3_small.py']
flags = {}

axes = {'n_loops': [5, 1],
        'pos_emb': ['none', 'sinusoidal', 'learned', 'type'],
        'causal': [True, False]}
seeds = [42, 451, 1984]

eval_flags = ['--max_loops=50']            # 10 x b_train

labels = {f'n_loops={b}, pos_emb={pe}, causal={causal}':
          f'{"no" if pe == "none" else pe} PE, {"mask" if causal else "no mask"}'
          for b in (5, 1) for pe in axes['pos_emb'] for causal in (True, False)}

plots = {
    'b5': {'n_loops': 5},
    'b1': {'n_loops': 1},
}
