# Experiment 5 (truncation after the first loop), scaled down to run on a 2-core CPU in minutes:
# d = 3, N = 9, b_train = 5, 2000 steps instead of d = 20, N = 64, b_train = 10 and long training.
# n_keep in {9, 7, 5, 4} stands for the experiment's {64, 48, 32, 24}: the same fractions of N, all above d.
#   python train.py config/exp5_small.py --n_keep=5 --select=random --seed=451
n_dims = 3
n_points = 9
learning_rate = 1e-3     # 5e-4 in the experiment; twice that leaves the zero-predictor plateau sooner
lr_schedule = 'cosine'
warmup_iters = 100
max_iters = 2000
n_loops = 5              # b_train
n_keep = 9               # = N: no truncation; the sweep sets 7, 5, 4
# Curricula: d grows 2 -> 3 at step 300 and b grows 1 -> 5 by step 800; all 9 examples from the start.
dims_start = 2
dims_interval = 300
points_start = 0
loops_start = 1
loops_interval = 200
eval_interval = 200
log_interval = 200
