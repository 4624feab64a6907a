# Experiment 5 on a 2-core CPU: truncate the prompt to n of its N = 20 examples after the first loop,
# b_train = 10, d = 5 (config/exp5_small.py), three seeds. Results: results/exp5_small/.
#   python sweep.py config/exp5_small_grid.py --out_dir=results/exp5_small --jobs=2
# Plain assignments, read by sweep.py.

experiment = 'exp5_small'                  # figures go to figures/exp5_small/<plot>/
configs = ['config/exp5_small.py']
flags = {}

axes = {'n_keep': [20, 15, 10, 8], 'select': ['first', 'random']}
skip = [{'n_keep': 20, 'select': 'random'}]  # keeping all 20 cuts nothing: the very run of select=first
extra = [                                  # the ideas the experiment left untested, at n = 10
    {'n_keep': 10, 'select': 'last'},
    {'n_keep': 10, 'truncate_after': 0},            # cut before the first loop: just a shorter prompt
    {'n_keep': 10, 'n_keep_schedule': 'shrink'},    # n falls from 20 to 10 over the later loops
    {'n_keep': 10, 'n_keep_random': True},          # n drawn from [10, 20] at every training step
    {'n_keep': 10, 'n_loops_random': True},         # b drawn from [5, 10] at every training step
    {'n_keep': 20, 'n_loops_random': True},         # the same without the cut
]
seeds = [42, 451, 1984]

eval_flags = ['--max_loops=100']           # 10 x b_train

labels = {
    'n_keep=20, select=first': 'all 20 (no cut)',
    'n_keep=15, select=first': 'first 15',
    'n_keep=15, select=random': 'random 15',
    'n_keep=10, select=first': 'first 10',
    'n_keep=10, select=random': 'random 10',
    'n_keep=8, select=first': 'first 8',
    'n_keep=8, select=random': 'random 8',
    'n_keep=10, select=last': 'last 10',
    'n_keep=10, truncate_after=0': 'first 10, cut before loop 1',
    'n_keep=10, n_keep_schedule=shrink': 'first n, n shrinks from 20 to 10',
    'n_keep=10, n_keep_random=True': 'first n, n drawn in 10..20 per step',
    'n_keep=10, n_loops_random=True': 'first 10, b drawn in 5..10 per step',
    'n_keep=20, n_loops_random=True': 'all 20, b drawn in 5..10 per step',
}

plots = {
    'n_keep_x_select': 'axes',
    'untested': {'n_keep': [20, 10], 'select': ['first', 'last']},
}
