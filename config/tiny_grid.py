# A grid small enough for the tests and for a smoke check of sweep.py: 2 variants x 2 seeds of a
# d = 2, N = 4 model, 30 steps each, seconds on a CPU.
#   python sweep.py config/tiny_grid.py --out_dir=/tmp/tiny --figures=/tmp/tiny_figures

experiment = 'tiny'
configs = []                               # no config file: the flags below say it all
flags = {'n_dims': 2, 'n_points': 4, 'n_layer': 1, 'n_head': 2, 'n_embd': 16, 'mlp_size': 32,
         'n_loops': 2, 'dims_start': 0, 'points_start': 0, 'batch_size': 16, 'val_prompts': 32,
         'max_iters': 30, 'eval_interval': 5, 'log_interval': 10, 'warmup_iters': 5, 'device': 'cpu',
         'loops_start': 0, 'loss_window': 0, 'n_loops_random': False, 'lr_schedule': 'constant',
         'learning_rate': 5e-4}
axes = {'pos_emb': ['learned', 'none']}
seeds = [1, 2]
eval_flags = ['--max_loops=4', '--n_prompts=32', '--k_prompts=8', '--device=cpu']
labels = {'pos_emb=learned': 'learned PE', 'pos_emb=none': 'no PE'}
plots = {'': 'all'}
