# Experiment 5: truncate the input to n of the N = 64 examples after the first loop, b_train = 10.
# Sweep n_keep in {64, 48, 32, 24} x select in {first, random}:
#   python train.py config/exp5_truncation.py --n_keep=32 --select=random --seed=451
# The experiment does not give d; 20 is the field's standard (Garg et al. 2022, Yang et al. 2024).
n_keep = 64              # = N: no truncation; the sweep sets 48, 32, 24
# No points curriculum: with it the prompt would hold fewer than n_keep examples for much of training
# (until step 20,000 of 50,000 for n = 48) and the cut would not be the experiment's n of 64.
points_start = 0
