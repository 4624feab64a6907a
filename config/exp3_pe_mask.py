# Experiment 3: positional encoding x causal mask (EXPERIMENTS.md).
# Sweep pos_emb in {none, sinusoidal, learned} (and the untested type) x causal in {True, False},
# at n_loops = 1 and 5 (loss_window follows n_loops):
#   python train.py config/exp3_pe_mask.py --pos_emb=sinusoidal --causal=False --n_loops=1 --loss_window=1
# The experiments do not give d; 20 is the field's standard (Garg et al. 2022, Yang et al. 2024).
n_dims = 20
n_points = 63            # 63 in-context examples, as in the experiment
n_layer = 2
n_head = 4
n_embd = 64
mlp_size = 256
batch_size = 64
learning_rate = 5e-4
n_loops = 5
loss_window = 5
pos_emb = 'learned'
causal = True
points_start = 11        # curriculum: 11 -> 63 examples and 5 -> 20 dims over the first 26-30k steps
points_step = 4
max_iters = 50000
