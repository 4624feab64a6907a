# Experiment 5 as one sweep: truncate the prompt to n of its N = 64 examples after the first loop,
# b_train = 10, d = 20 (config/exp5_truncation.py, train.py's recipe): the 7 arms on three seeds, the 6
# untested ideas on seed 42: 27 runs.
#   python sweep.py config/exp5_grid.py                   # train what is missing, evaluate, plot
#   python sweep.py config/exp5_grid.py --dry_run=True    # the commands, and what is done already
# Plain assignments, read by sweep.py; each run is train.py's and lives where train.py names it
# (out/exp5_truncation,n_keep=32,select=random,seed=451), so runs made by hand count too.

experiment = 'exp5'                        # figures go to figures/exp5/<plot>/
configs = ['config/exp5_truncation.py']    # train.py's config files, first on every command line
flags = {}                                 # train.py flags for every run

# the variants: every combination of the axes, less the ones in skip, then the extras
axes = {'n_keep': [64, 48, 32, 24], 'select': ['first', 'random']}
skip = [{'n_keep': 64, 'select': 'random'}]  # keeping all 64 cuts nothing, so select changes nothing:
                                             # the very same run as select=first
extra = [                                  # the ideas the experiment left untested, at n = 32
    {'n_keep': 32, 'select': 'last'},
    {'n_keep': 32, 'truncate_after': 0},            # cut before the first loop: just a shorter prompt
    {'n_keep': 32, 'n_keep_schedule': 'shrink'},    # n falls from 64 to 32 over the later loops
    {'n_keep': 32, 'n_keep_random': True},          # n drawn from [32, 64] at every training step
    # the write-up's loops: b = 10 at every step, all 10 in the loss (the recipe draws b from [5, 10],
    # [5, 20] once d = 20, and trains the last 5), with the cut and without it
    {'n_keep': 32, 'n_loops_random': False, 'loss_window': 0},
    {'n_keep': 64, 'n_loops_random': False, 'loss_window': 0},
]
seeds = [42, 451, 1984]
extra_seeds = [42]                         # the extras on seed 42 only: 7 x 3 + 6 = 27 runs

eval_flags = ['--max_loops=100']           # eval_extrapolation.py's flags

# legend labels (no ';' or '='), by variant: its own flags as written above
labels = {
    'n_keep=64, select=first': 'all 64 (no cut)',
    'n_keep=48, select=first': 'first 48',
    'n_keep=48, select=random': 'random 48',
    'n_keep=32, select=first': 'first 32',
    'n_keep=32, select=random': 'random 32',
    'n_keep=24, select=first': 'first 24',
    'n_keep=24, select=random': 'random 24',
    'n_keep=32, select=last': 'last 32',
    'n_keep=32, truncate_after=0': 'first 32, cut before loop 1',
    'n_keep=32, n_keep_schedule=shrink': 'first n, n shrinks from 64 to 32',
    'n_keep=32, n_keep_random=True': 'first n, n drawn in 32..64 per step',
    'n_keep=32, n_loops_random=False, loss_window=0': 'first 32, b fixed at 10',
    'n_keep=64, n_loops_random=False, loss_window=0': 'all 64, b fixed at 10',
}

# the figures, each in figures/exp5/<name>/: 'all' variants, the 'axes' combinations, the 'extra'
# ones, or those whose config matches {flag: value or [values]}
plots = {
    'n_keep_x_select': 'axes',
    'untested': {'n_keep': [64, 32]},      # the extras next to no cut, first 32 and random 32
}
