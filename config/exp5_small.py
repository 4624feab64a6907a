# Experiment 5 (truncation after the first loop), scaled to a 2-core CPU: d = 5, N = 20, b_train = 10
# (the experiment: d = 20, N = 64) with config/laptop.py's recipe, which learns the task at this size.
# n_keep in {20, 15, 10, 8} stands for the experiment's {64, 48, 32, 24}: the same fractions of N.
#   python train.py config/exp5_small.py --n_keep=10 --select=random --seed=451
#   python sweep.py config/exp5_small_grid.py      # every variant x 3 seeds, evaluated and plotted
n_dims = 5
n_points = 20
learning_rate = 3e-3     # 5e-4 in the experiment: the curricula below let every seed take 3e-3
warmup_iters = 200
lr_schedule = 'cosine'
max_iters = 2000
n_loops = 10             # b_train, as in the experiment
loss_window = 5          # the last 5 loops carry the gradient (the recipe's; half the step's cost)
n_loops_random = False   # b = 10 at every step; the grid also draws it
n_loops_draw = 0         # a draw stays within [5, 10]
n_keep = 20              # = N: no cut; the sweep sets 15, 10, 8
# Curricula: d grows 2 -> 5 and N with it (N = 4d, 8 -> 20), one step every 200 steps; b grows 1 -> 10.
# With all 20 examples from the first step many seeds never leave the zero-predictor plateau. While
# the prompt holds no more than n_keep examples nothing is cut: the cut is n of 20 from step 600 on
# (n = 15: from step 400, of 16), 70% of the training.
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
