# The write-ups' own training recipe, for the model and data of train.py's defaults (d = 20, N = 64,
# 2 layers x 64, 4 heads, batch 64, b = 10): lr 5e-4 held constant, every loop in the loss, and
# Garg et al.'s slow curricula (d 5 -> 20 and N 11 -> 64, one step every 2,000 steps: full size at
# step 30,000 of 50,000). About 10 hours on a 2-core CPU; train.py's defaults learn faster.
#   python train.py config/writeup.py
learning_rate = 5e-4
lr_schedule = 'constant'
warmup_iters = 500
max_iters = 50000
n_loops = 10
loss_window = 0          # all 10 loops carry gradient
n_loops_random = False   # every step runs b = 10
curriculum_gate = 0.0    # d grows on the clock alone, as in the write-ups
dims_start = 5
dims_step = 1
dims_interval = 2000
points_start = 11
points_step = 4
points_interval = 2000
loops_start = 0          # all b loops from the first step
