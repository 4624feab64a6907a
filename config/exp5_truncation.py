# Experiment 5: truncate the input to n of the N examples after the first loop (EXPERIMENTS.md).
# Sweep n_keep in {64, 48, 32, 24} x select in {first, random}:
#   python train.py config/exp5_truncation.py --n_keep=32 --select=random --seed=451
# The experiments do not give d; 20 is the field's standard (Garg et al. 2022, Yang et al. 2024).
n_dims = 20
n_points = 64            # 64 examples + the query: 129 tokens
n_layer = 2
n_head = 4
n_embd = 64
mlp_size = 256
batch_size = 64
learning_rate = 5e-4
inject = 'add'
n_loops = 10             # b_train
loss_window = 10
truncate_after = 1       # iteration 1 sees all N examples, later ones only the kept n
n_keep = 64              # = N: no truncation; the sweep sets 48, 32, 24
select = 'first'
points_start = 11        # curriculum: 11 -> 64 examples and 5 -> 20 dims over the first 26-30k steps
points_step = 4
max_iters = 50000
