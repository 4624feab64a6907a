# Experiment 3: positional encoding x causal mask, at the experiment's scale (d = 20, 63 examples).
# Sweep pos_emb in {none, sinusoidal, learned, type} x causal in {True, False} at n_loops 1 and 5:
#   python train.py config/exp3_pe_mask.py --pos_emb=sinusoidal --causal=False --n_loops=1
# The experiment does not give d; 20 is the field's standard (Garg et al. 2022, Yang et al. 2024).
n_points = 63            # 63 in-context examples, as in the experiment
n_loops = 5              # the loss window (0) covers all loops
points_start = 11        # curriculum: 11 -> 63 examples and 5 -> 20 dims over the first 26-30k steps
