# Experiment 5: truncate the input to n of the N = 64 examples after the first loop, b_train = 10.
#   python train.py config/exp5_truncation.py --n_keep=32 --select=random --seed=451
#   python sweep.py config/exp5_grid.py     # n_keep x select, and the ideas left untested, x 3 seeds
# The model and data are the write-up's; the training recipe is train.py's, which differs from the
# write-up's (config/writeup.py): lr 3e-3 with warmup and a decay at the end, not 5e-4 held constant;
# each step draws b from [5, 10] (from [5, 20] once d = 20) and trains its last 5 loops, not b = 10 with
# all loops trained (the grid runs that too); d and N grow together from d = 2, N = 8 (N = 4d), once the
# error at the current d is below 0.7, so that the model leaves the zero-predictor plateau. Nothing is
# cut while the prompt holds no more than n examples: the cut is n of N > n from step 2,000 (n = 24),
# 2,800 (32) or 4,400 (48), and n of 64 from step 5,600 (each later by any steps the gate holds d back).
# The write-up does not give d; 20 is the field's standard (Garg et al. 2022, Yang et al. 2024).
n_keep = 64              # = N: no truncation; the sweep sets 48, 32, 24
