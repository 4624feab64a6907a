# Experiment 3 as one sweep: positional encoding x causal mask, at b = 5 and b = 1 loops, d = 20 and
# 63 examples (config/exp3_pe_mask.py), three seeds.
#   python sweep.py config/exp3_grid.py                   # train what is missing, evaluate, plot
#   python sweep.py config/exp3_grid.py --dry_run=True    # the commands, and what is done already
# Plain assignments, read by sweep.py; each run is train.py's and lives where train.py names it
# (out/exp3_pe_mask,pos_emb=sinusoidal,causal=False,n_loops=1,seed=42): runs made by hand count too.

experiment = 'exp3'                        # figures go to figures/exp3/<plot>/
configs = ['config/exp3_pe_mask.py']       # train.py's config files, first on every command line
flags = {}                                 # train.py flags for every run

# the variants: every combination of the axes (the loss covers all b loops: loss_window 0)
axes = {'n_loops': [5, 1],
        'pos_emb': ['none', 'sinusoidal', 'learned', 'type'],
        'causal': [True, False]}
seeds = [42, 451, 1984]

eval_flags = ['--max_loops=50']            # eval_extrapolation.py's flags

# legends: plot.py's own labels (pos_emb=..., causal=...) say it already
labels = {}

# the figures, each in figures/exp3/<name>/: the runs whose config matches {flag: value or [values]}
plots = {
    'b5': {'n_loops': 5},
    'b1': {'n_loops': 1},
}
