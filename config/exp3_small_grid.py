# Experiment 3 on a 2-core CPU: positional encoding x causal mask at b = 5 and b = 1, d = 5, N = 20
# (config/exp3_small.py), three seeds, and the loss on the query alone. Results: results/exp3_small/.
#   python sweep.py config/exp3_small_grid.py --out_dir=results/exp3_small --jobs=2
# Plain assignments, read by sweep.py.

experiment = 'exp3_small'                  # figures go to figures/exp3_small/<plot>/
configs = ['config/exp3_small.py']
flags = {}

axes = {'n_loops': [5, 1],
        'pos_emb': ['none', 'sinusoidal', 'learned', 'type'],
        'causal': [True, False]}
# The author's explanation of the overfitting without the mask: the loss covers every x position, and
# each can read the y that follows it. With the loss on the query alone there is nothing to read, so
# the gap should close. Same steps (same compute), a 20th of the supervised targets; with the mask too.
extra = [
    {'n_loops': 5, 'pos_emb': 'learned', 'causal': False, 'loss_on': 'query'},
    {'n_loops': 5, 'pos_emb': 'sinusoidal', 'causal': False, 'loss_on': 'query'},
    {'n_loops': 5, 'pos_emb': 'learned', 'causal': True, 'loss_on': 'query'},
]
seeds = [42, 451, 1984]

eval_flags = ['--max_loops=50']            # 10 x b_train

labels = {}

plots = {
    'b5': {'n_loops': 5, 'loss_on': 'all'},
    'b1': {'n_loops': 1},
    'loss_on': {'n_loops': 5, 'pos_emb': ['learned', 'sinusoidal']},
}
