# Experiment 3 (positional encoding x causal mask), scaled to a 2-core CPU: d = 5, N = 20 (the
# experiment: d = 20, 63 examples) with config/laptop.py's recipe, which learns the task at this size.
#   python train.py config/exp3_small.py --pos_emb=sinusoidal --causal=False --n_loops=1
#   python sweep.py config/exp3_small_grid.py      # every variant x 3 seeds, evaluated and plotted
# The reference variant (learned PE with the mask) ends within 0.02 of least squares at k = N. Two runs
# sharing a 2-core CPU (one thread each) take about 7 min each at b = 5 and 1.5 min at b = 1.
n_dims = 5
n_points = 20
learning_rate = 3e-3     # 5e-4 in the experiment: the curricula below let every seed take 3e-3
warmup_iters = 200
lr_schedule = 'cosine'
max_iters = 2000
n_loops = 5              # b = 5, every loop in the loss; the sweep also runs b = 1
loss_window = 0
n_loops_random = False
# Curricula: d grows 2 -> 5 and N with it (N = 4d, 8 -> 20), one step every 200 steps; b grows 1 -> 5.
# With all 20 examples from the first step many seeds never leave the zero-predictor plateau.
curriculum_gate = 0.0    # d grows on the clock alone (its results were made so)
dims_start = 2
dims_interval = 200
points_start = 8
points_step = 4
points_interval = 200
loops_start = 1
loops_interval = 50
eval_interval = 400
log_interval = 200
