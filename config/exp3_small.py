# Experiment 3 (positional encoding x causal mask), scaled down to run on a 2-core CPU in minutes:
# d = 3, N = 9, 2000 steps instead of d = 20, N = 63 and long training. The model is the experiment's.
#   python train.py config/exp3_small.py --pos_emb=sinusoidal --causal=False --n_loops=1
n_dims = 3
n_points = 9
learning_rate = 1e-3     # 5e-4 in the experiment; twice that leaves the zero-predictor plateau sooner
lr_schedule = 'cosine'
warmup_iters = 100
max_iters = 2000
n_loops = 5              # b = 5; the sweep also runs b = 1
# Curricula: d grows 2 -> 3 at step 300 and b grows 1 -> 5 by step 800; all 9 examples from the start.
dims_start = 2
dims_interval = 300
points_start = 0
loops_start = 1
loops_interval = 200
eval_interval = 200
log_interval = 200
