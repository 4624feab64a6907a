# Linear regression in context on a laptop CPU: d = 5, N = 20, looped up to b = 16 times.
#   python train.py config/laptop.py
n_dims = 5
n_points = 20
learning_rate = 3e-3
warmup_iters = 200
lr_schedule = 'cosine'
max_iters = 2800
# Loops: each step runs b ~ U[5, 16] loops and trains the last 5, so the prediction must hold from
# loop 5 to loop 16 and beyond (a fixed point), not only at one b.
n_loops = 16
loss_window = 5
n_loops_random = True
n_loops_draw = 0         # the draw stays within [5, 16] (train.py's goes to 20 at full size)
# Curricula: d grows 2 -> 5 and N with it, N = 4d (8 -> 20), one step every 200 steps; b grows
# 1 -> 16 (every 50 steps). At d = 5, N = 20 from the start the model sits on the zero-predictor
# plateau for 1000 steps or more, and at lr 3e-3 often for good; short prompts give a stronger
# signal, so N = 4d from the start lets every seed leave it, and d = 5 is reached by step 600.
curriculum_gate = 0.0    # d grows on the clock alone (its results were made so)
dims_start = 2
dims_interval = 200
points_start = 8
points_step = 4
points_interval = 200
loops_start = 1
loops_interval = 50
eval_interval = 400      # each evaluation costs about 25 steps
log_interval = 100
