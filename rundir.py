"""A run on disk (config.json, log.csv, ckpt.pt; eval.json): fresh or resumed, locked while a process owns it,
written so no kill or full disk leaves half a file. torch loads only for checkpoints: plot.py stays light."""

import atexit
import contextlib
import csv
import fcntl
import importlib.util
import json
import math
import os
import shutil
from types import SimpleNamespace

from configurator import ADDED, NOT_IN_NAME, ConfigError, fail, makeable, read_json

CKPT_VERSION = 2
# log.csv, a row per evaluation. val_loss, val_err: at the final d = n_dims and N = n_points (val_err_k2d: on
# the first 2d examples); val_err_now at d, N, where the curricula stand; every val_ at b loops (<= b_train)
LOG_COLUMNS = 'iter train_loss val_loss val_err val_err_k2d val_err_now lr ms_per_step d N b'.split()
# eval.json's error-vs-k curves: the model at b_train and at max_loops, and the classical algorithms
EVAL_CURVES = ('model_b_train', 'model_max_loops', 'least_squares', 'ridge', 'knn', 'averaging', 'gd')


def write_file(path, write, mode='w'):
    """write(f) into path via a synced temporary file and a rename: a kill or full disk keeps the old file."""
    try:
        with open(path + '.tmp', mode, newline=None if 'b' in mode else '') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + '.tmp', path)
    except BaseException as err:  # whatever failed (a full disk, Ctrl-C, a bug), no .tmp is left behind
        with contextlib.suppress(OSError):
            os.remove(path + '.tmp')
        if isinstance(err, (OSError, RuntimeError)):  # RuntimeError: torch.save's own, as on a full disk
            raise ConfigError(f'cannot write {path}: {err}') from None
        raise


def save_checkpoint(path, state, kept=None):
    """state into path, written whole or not at all; a failed write's ConfigError names the step kept."""
    import torch
    try:
        write_file(path, lambda f: torch.save(state, f), 'wb')
    except ConfigError as err:
        kept = f'the checkpoint of step {kept} is kept' if kept is not None else 'no checkpoint was written'
        raise ConfigError(f'{err} ({kept})') from None


def load_checkpoint(path, map_location='cpu'):
    """Tensors and plain values only (weights_only): a shared checkpoint cannot run code on load."""
    import torch
    if not os.path.isfile(path):
        raise ConfigError(f'no checkpoint at {path}')
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        first = (str(err).splitlines() or [''])[0][:200]
        raise ConfigError(f'{path} is not a readable checkpoint ({type(err).__name__}: {first})') from None
    version = ckpt.get('version') if isinstance(ckpt, dict) else None
    if version != CKPT_VERSION:
        raise ConfigError(f'{path} is a checkpoint of version {version}; this code reads {CKPT_VERSION}')
    return ckpt


# ----- log.csv and eval.json

def read_log(path, upto):
    """log.csv's rows up to iteration `upto` (a resumed run logs the later ones again), or None if it is
    missing or empty; anything else not a log this code wrote is refused: a resume's rewrite drops no data."""
    if os.path.exists(path) and not os.path.isfile(path):  # a folder, say: resume would fail after writing
        raise ConfigError(f'{path} is not a file; remove it or move it away')
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    try:
        with open(path, newline='') as f:
            header, *rows = csv.reader(f)
        if not header or header[0] != 'iter' or not set(header) <= set(LOG_COLUMNS):
            raise ValueError(f'line 1 is not a header of {", ".join(LOG_COLUMNS)}')
        for number, row in enumerate(rows, 2):  # a blank line too is not a row
            if len(row) != len(header) or not row[0].isdigit() or not all(map(is_number, row)):
                raise ValueError(f'line {number} is not a row of the log: {",".join(row)[:60]!r}')
        return [dict(zip(header, r)) for r in rows if int(r[0]) <= upto]
    except (OSError, ValueError, csv.Error) as err:
        raise ConfigError(f'{path} is malformed ({err}); repair or remove it') from None


def is_number(text):  # an empty cell is a column an older log lacks
    with contextlib.suppress(ValueError):
        return math.isfinite(float(text or 0))
    return False


def append_row(path, row):
    """One row onto log.csv (a header first if it went missing); a failed write is undone: no half row."""
    size = os.path.getsize(path) if os.path.exists(path) else None
    try:
        with open(path, 'a', newline='') as f:
            csv.writer(f).writerows(([LOG_COLUMNS] if size is None else []) + [row])
    except OSError as err:
        with contextlib.suppress(OSError):
            os.truncate(path, size or 0)
        fail(f'cannot write {path}: {err}')


def read_eval(path):
    """eval.json as eval_extrapolation.py writes it, each curve as long as its axis and made of numbers
    (null: NaN), or a ConfigError naming it: a damaged or hand-edited file is never half used."""
    ev = read_json(path)
    try:
        n_loops, n_k, lens = ev['eval']['max_loops'], len(ev['k']), ev.get('lens') or {}  # {}: from before it
        if (ev['loops'] != list(range(1, n_loops + 1)) or ev['k'] != list(range(n_k))
                or not isinstance(ev['config'], dict) or type(ev['b_train']) is not int
                or not isinstance(ev.get('checkpoint') or {}, dict)):
            raise ValueError('loops not 1..max_loops, k not 0..N, or a bad config, b_train or checkpoint')
        stats = [(ev['err_vs_loops'], n_loops)] + [(ev['err_vs_k'][name], n_k) for name in EVAL_CURVES]
        curves = [(ev['fixed_point'], n_loops), ([ev['seconds'][k] for k in ('loop_sweep', 'k_sweep')], 2),
                  ([ev['eval'][k] for k in ('seed', 'n_prompts', 'gd_steps')], 3)]  # (values, how many)
        if lens:  # one from before its calibration (no 'explains') read GD steps alone
            keys = ('to_ls', 'affine_err') + ('gd_step',) * ('explains' not in lens)
            stats += [(lens[key], n_loops) for key in keys]
            stats += [(f[k], n_loops) for f in lens.get('families', {}).values() for k in ('dist', 'null')]
            curves += [(lens['linear'], n_loops), ([lens['gd_max_steps'], lens['tol']], 2)]
        if 'explains' in lens:  # a reading per loop; the spectral view, a row of bins per loop taken at
            spectrum, words = lens['spectrum'], lens['explains'] + lens['nearest']
            n_bins, rows = len(spectrum['edges']) - 1, [spectrum[n] for n in ('model', *lens['families'])]
            if not (len(lens['families']) == 3 and len(lens['explains']) == len(lens['nearest']) == n_loops
                    and all(type(v) is str for v in words)
                    and all(isinstance(r, list) and len(r) == len(spectrum['loops']) for r in rows)):
                raise ValueError('the lens has not three families, a reading per loop or its spectrum')
            curves += [(spectrum['loops'], len(spectrum['loops'])), (spectrum['edges'], n_bins + 1)]
            curves += [(row, n_bins) for r in rows for row in r]
        curves += [(s[key], n) for s, n in stats for key in ('mean', 'sem')]
        for values, n in curves:
            if not (isinstance(values, list) and len(values) == n
                    and all(v is None or type(v) in (int, float, bool) for v in values)):
                raise ValueError(f'{str(values)[:50]} is not {n} numbers')
    except (TypeError, KeyError, ValueError, AttributeError) as err:
        raise ConfigError(f'{path} does not hold what eval_extrapolation.py writes '
                          f'({type(err).__name__}: {err})') from None
    return ev


# ----- opening a run: fresh or resumed

def refuse_to_overwrite(config, directory):
    """A ConfigError if a fresh run would overwrite one (unless --overwrite=True)."""
    if config['overwrite']:
        return
    if os.path.exists(os.path.join(directory, 'ckpt.pt')):
        raise ConfigError(f'{directory} already holds a checkpoint: --init_from=resume continues it, '
                          f'--overwrite=True starts over')
    # results without their checkpoint (as committed to a repository) are not started over either
    if any(os.path.exists(os.path.join(directory, f)) for f in ('eval.json', 'model.pt')) or read_log(
            os.path.join(directory, 'log.csv'), math.inf):
        raise ConfigError(f'{directory} holds the results of a run (log.csv, eval.json, model.pt) but no '
                          f'checkpoint: --overwrite=True starts over')


def find_checkpoint(config, directory):
    """The checkpoint a run continues (None: it starts from scratch), or a ConfigError; writes nothing."""
    # a mistyped or unwritable --out_dir ends here in one line, not in a traceback after the model is built
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError(f'{directory} exists and is not a directory')
    makeable(directory)
    ckpt_path = os.path.join(directory, 'ckpt.pt')
    if config['init_from'] == 'scratch':
        refuse_to_overwrite(config, directory)
        return None
    ckpt = load_checkpoint(ckpt_path)
    # resume continues the run it finds: a flag that changes what the run computes is refused
    # (the seed too: the checkpoint's random state continues, and config.json must not claim another)
    trained = {**ADDED, **ckpt['config']}  # a run saved before a flag existed ran at its old value
    changed = [k for k in config if (k not in NOT_IN_NAME or k == 'seed') and trained.get(k) != config[k]]
    if changed:
        was = ', '.join(f'--{k}={config[k]!r} (trained with {trained.get(k)!r})' for k in changed)
        raise ConfigError(f'--init_from=resume: {ckpt_path} is another run: {was}; drop or match those flags')
    if ckpt['iter'] >= config['max_iters']:
        raise ConfigError(f'--init_from=resume: {ckpt_path} is at step {ckpt["iter"]}, '
                          f'max_iters={config["max_iters"]}: nothing left to do (raise --max_iters)')
    read_log(os.path.join(directory, 'log.csv'), ckpt['iter'])  # a malformed log is refused before any write
    return ckpt


def take(directory, config, ckpt):
    """Make and lock the run directory, write config.json and the log kept so far: (lock, log rows)."""
    os.makedirs(directory, exist_ok=True)
    # owned while this process lives: an exclusive flock on the run directory itself, which the kernel drops
    # however the process ends (SIGKILL included), and which no removed file can undo (a lock file could)
    held = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(held)
        raise ConfigError(f'{directory} is in use by another process (it holds its lock)') from None
    atexit.register(os.close, held)  # at the end of a script run in-process too (as the tests run train.py)
    ckpt_path, log_path = os.path.join(directory, 'ckpt.pt'), os.path.join(directory, 'log.csv')
    if ckpt is None:  # checked again under the lock: another run may have saved since find_checkpoint looked
        refuse_to_overwrite(config, directory)
        for stale in ('ckpt.pt', 'eval.json', 'model.pt'):  # what an earlier run left (--overwrite=True)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, stale))
    elif load_checkpoint(ckpt_path)['iter'] != ckpt['iter']:
        raise ConfigError(f'{ckpt_path} changed as this run started (another process saved it): run it again')
    rows = [] if ckpt is None else read_log(log_path, ckpt['iter'])
    if rows is None:
        print(f'note: {log_path} is missing or empty: a new log starts at step {ckpt["iter"]}')
        rows = []
    write_file(os.path.join(directory, 'config.json'), lambda f: json.dump(config, f, indent=2))
    write_file(log_path, lambda f: csv.DictWriter(f, LOG_COLUMNS, restval='').writerows(
        [dict(zip(LOG_COLUMNS, LOG_COLUMNS))] + rows))
    return held, rows


def tracker(config, directory):
    """wandb's run (--wandb_log=True), made before the run directory is written: a failure (not installed, not
    logged in, a bad project) is one line and leaves nothing; else a stand-in whose log does nothing."""
    if not config['wandb_log']:
        return SimpleNamespace(log=lambda *args, **kwargs: None)
    if importlib.util.find_spec('wandb') is None:
        raise ConfigError('--wandb_log=True: wandb is not installed (pip install wandb)')
    import wandb
    made = not os.path.exists(directory)
    os.makedirs(directory, exist_ok=True)
    try:
        return wandb.init(project=config['wandb_project'], config=config, dir=directory,
                          name=config['wandb_run_name'] or os.path.basename(directory))
    except Exception as err:  # wandb's own errors are of many kinds
        if made:
            shutil.rmtree(directory, ignore_errors=True)
        raise ConfigError(f'--wandb_log=True: wandb.init failed ({type(err).__name__}: '
                          f'{" ".join(str(err).split())})') from None  # one line


# ----- random states: a resumed run draws what the uninterrupted run would have drawn

def rng_state(device, generators):
    import torch
    return {'torch': torch.get_rng_state(), 'device_type': device.type,
            'cuda': torch.cuda.get_rng_state(device) if device.type == 'cuda' else None,
            'mps': torch.mps.get_rng_state() if device.type == 'mps' else None,  # dropout's, on Apple GPUs
            **{name: g.get_state() for name, g in generators.items()}}


def restore(ckpt, model, optimizers, device, generators):
    """The weights, the optimizers and every random state from the checkpoint, and the step to continue from;
    AdamW's fused kernel stays this device's choice; a generator saved on another device type is re-seeded."""
    import torch
    model.load_state_dict(ckpt['model'])
    states = ckpt['optimizer'] if isinstance(ckpt['optimizer'], list) else [ckpt['optimizer']]  # one: AdamW's
    for optimizer, state in zip(optimizers, states, strict=True):
        fused = [group.get('fused') for group in optimizer.param_groups]
        optimizer.load_state_dict(state)
        for group, flag in zip(optimizer.param_groups, fused):
            if flag is not None:  # Muon has no fused kernel
                group['fused'] = flag
    rng = ckpt['rng']
    torch.set_rng_state(rng['torch'])
    if device.type == 'cuda' and rng.get('cuda') is not None:
        torch.cuda.set_rng_state(rng['cuda'], device)
    if device.type == 'mps' and rng.get('mps') is not None:
        torch.mps.set_rng_state(rng['mps'])
    for i, (name, g) in enumerate(generators.items()):
        if rng['device_type'] == g.device.type or name == 'host':
            g.set_state(rng[name])
        else:  # each stream a seed of its own: the cut's draws must not repeat the data's
            g.manual_seed((ckpt['config']['seed'] * 1_000_003 + ckpt['iter']) * len(generators) + i)
            print(f'note: the {name} generator, saved on {rng["device_type"]}, is re-seeded here: its '
                  f'draws from step {ckpt["iter"]} on differ from an uninterrupted run (the weights do not)')
    return ckpt['iter']
