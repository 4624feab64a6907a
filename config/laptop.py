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
warmup_iters = 200
lr_schedule = 'cosine'
max_iters = 3000
dims_start = 0           # no curriculum on d or N: the task is small enough to learn directly
points_start = 0
loops_start = 1          # but a looped model learns much faster if b grows: 1, 2, ... 5 by step 1600
loops_step = 1
loops_interval = 400
eval_interval = 250
log_interval = 50
