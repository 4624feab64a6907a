# Linear regression in context on a laptop CPU: d = 5, N = 20, looped up to b = 20 times.
#   python train.py config/laptop.py
n_dims = 5
n_points = 20
learning_rate = 2e-3     # 3e-3 learns faster when it leaves the plateau, but leaves it in fewer seeds
warmup_iters = 200
lr_schedule = 'cosine'
max_iters = 2400
# Loops: each step runs b ~ U[5, 20] loops and trains the last 5, so the prediction must hold from
# loop 5 to loop 20 and beyond (a fixed point), not only at one b.
n_loops = 20
loss_window = 5
n_loops_random = True
# Curricula: d grows 2 -> 5 (one more every 300 steps) and b grows 1 -> 20 (every 50 steps): at d = 5
# and b = 20 from the start the model stays on the zero-predictor plateau.
dims_start = 2
dims_interval = 300
points_start = 0         # all 20 examples from the start
loops_start = 1
loops_interval = 50
eval_interval = 200
log_interval = 100
