# Learns visibly in a few minutes on a 2-core laptop CPU: d = 5, N = 20, b = 5.
#   python train.py config/laptop.py
n_dims = 5
n_points = 20
n_layer = 2
n_head = 4
n_embd = 64
mlp_size = 256
n_loops = 5
loss_window = 5
batch_size = 64
learning_rate = 1e-3
warmup_iters = 100
lr_schedule = 'cosine'
max_iters = 3000
# Curricula: at d = 5 from the start, and with all 5 loops, training sits on the zero-predictor
# plateau for well over 500 steps; growing d from 2 and b from 1 leaves it within a few hundred.
dims_start = 2
dims_step = 1
dims_interval = 300      # d = 5 from step 900
points_start = 0         # all 20 examples from the start
loops_start = 1
loops_step = 1
loops_interval = 300     # b = 5 from step 1200
eval_interval = 250
log_interval = 50
