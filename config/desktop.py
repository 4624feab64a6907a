# Linear regression in context at d = 10, N = 40: config/laptop.py's recipe, twice the size.
#   python train.py config/desktop.py
n_dims = 10
n_points = 40
learning_rate = 3e-3
warmup_iters = 200
lr_schedule = 'cosine'
max_iters = 6000
# Loops: b ~ U[5, 16], the last 5 trained, as in config/laptop.py.
n_loops = 16
loss_window = 5
n_loops_random = True
n_loops_draw = 0         # the draw stays within [5, 16], as config/laptop.py's
# Curricula: d grows 2 -> 10 and N with it (N = 4d, 8 -> 40), one step every 200 steps, so the full
# size arrives at step 1600; b grows 1 -> 16 (every 50 steps).
curriculum_gate = 0.0    # d grows on the clock alone (its results were made so)
dims_start = 2
dims_interval = 200
points_start = 8
points_step = 4
points_interval = 200
loops_start = 1
loops_interval = 50
eval_interval = 500      # each evaluation costs about 25 steps
log_interval = 100
