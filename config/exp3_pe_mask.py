# Experiment 3: positional encoding x causal mask, at the experiment's scale (d = 20, 63 examples).
#   python train.py config/exp3_pe_mask.py --pos_emb=sinusoidal --causal=False --n_loops=1
#   python sweep.py config/exp3_grid.py     # {none, sinusoidal, learned, type} x mask x b in {1, 5} x 3 seeds
# The model and data are the write-up's; the training recipe is train.py's, which differs from the
# write-up's (config/writeup.py): lr 3e-3 with warmup and a decay at the end, not 5e-4 held constant;
# d and N grown together from d = 2, N = 8 (N = 4d) to full size by step 7,200 (later if the gate
# holds d back), not over 30,000 of 50,000; fewer steps in all. As in the write-up, every loop of the
# one b of each step is in the loss. The write-up does not give d; 20 is the field's standard (Garg et
# al. 2022, Yang et al. 2024).
n_points = 63            # 63 in-context examples, as in the experiment
n_loops = 5              # b = 5; the grid also runs b = 1
loss_window = 0          # every loop carries gradient and enters the loss, as in the write-up
n_loops_random = False   # the same b at every step, as in the write-up
