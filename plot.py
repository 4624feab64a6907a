"""
Figures from the runs' logs (log.csv) and eval results (eval.json): every curve is a mean over seeds with
a shaded band (std over seeds, cut to the range the seeds span; with a single seed, the eval curves fall
back to the standard error over prompts).

    python plot.py out/exp5_* --out=figures/
    python plot.py out/exp5_* --only="select=first" --labels="n_keep=0=full context;n_keep=32=keep 32"

Runs whose configs differ only by seed (or by where and how they ran) form one variant, labelled by the
config keys that differ between variants. --only keeps the variants whose label holds any of the given
substrings and labels them again by what differs among those alone; --labels then renames them (old=new,
split at the last '='); both take lists split at ';', or at ',' when there is no ';'. Writes NAME.svg and
NAME.png into --out for performance, loss_comparison, extrapolation, error_vs_examples and lens; a figure no
run has the data for is skipped with a message.
"""

import contextlib
import csv
import json
import math
import os
import sys
import warnings

import matplotlib
matplotlib.use('Agg')  # files only: no display needed, works on a headless machine
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from configurator import (ConfigError, exit_on_errors, fail, find_runs, group_runs, parse, read_defaults,
                          read_json, rename_variants, split_list)

# -----------------------------------------------------------------------------
# defaults
out = 'figures/'         # folder the figures are written to (NAME.svg and NAME.png)
only = ''                # keep the variants whose label holds any of these substrings (split at ; or ,)
labels = ''              # rename variants: old=new, split at ; or ,
# end of defaults
# -----------------------------------------------------------------------------
DEFAULTS, HELPS = read_defaults(__file__, '# defaults', '# end of defaults')
ERROR = 'query error (squared error / d)'
# the baselines thin, grey, dotted and marked, so that colours and solid / dashed lines stay for the models
BASELINE_STYLE = {'least_squares': ('least squares', '0.0', 'o'), 'ridge': ('ridge', '0.35', 's'),
                  'knn': ('3-nearest neighbours', '0.55', '^'), 'averaging': ('averaging', '0.55', 'v'),
                  'gd': ('gradient descent', '0.2', 'x')}


def load_run(path):
    """A run's config.json, log.csv and eval.json; a file that is there but unreadable, or that lacks what
    the figures read, is a ConfigError naming it (never a traceback halfway through the figures)."""
    config_path = os.path.join(path, 'config.json')
    run = {'dir': path, 'config': read_json(config_path), 'log': None, 'eval': None}
    if not isinstance(run['config'], dict) or not all(type(run['config'].get(k)) is int
                                                      for k in ('n_dims', 'n_points')):
        raise ConfigError(f'{config_path} is not the config.json of a run (no n_dims and n_points)')
    log_path, eval_path = os.path.join(path, 'log.csv'), os.path.join(path, 'eval.json')
    if os.path.isfile(log_path):
        try:
            with open(log_path, newline='') as f:
                rows = list(csv.DictReader(f))
            if rows:  # {column: (rows,)}; an empty or missing cell is NaN
                run['log'] = {col: np.array([float(r[col]) if r.get(col) else math.nan for r in rows])
                              for col in rows[0]}
                missing = [c for c in LOG_READ if c not in run['log']]
                if missing:
                    raise ValueError(f'no column {", ".join(missing)}')
        except (OSError, ValueError, TypeError, csv.Error) as err:
            raise ConfigError(f'{log_path} is malformed ({type(err).__name__}: {err})') from None
    if os.path.isfile(eval_path):
        run['eval'] = read_json(eval_path)
        try:
            check_eval(run['eval'])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ConfigError(f'{eval_path} does not hold what eval_extrapolation.py writes '
                              f'({type(err).__name__}: {err}); run it again') from None
    return run


LOG_READ = ('iter', 'train_loss', 'val_err')  # the log columns the figures draw


def check_eval(ev):
    """Raises KeyError, TypeError or ValueError unless the eval.json ev holds every curve the figures
    draw, each of the length of its x axis, and the settings they name."""
    n_loops, n_k = len(ev['loops']), len(ev['k'])
    names = ('model_b_train', 'model_max_loops', *BASELINE_STYLE)
    curves = [(ev['err_vs_loops'], n_loops)] + [(ev['err_vs_k'][name], n_k) for name in names]
    checked = [(ev['loops'], n_loops), (ev['k'], n_k), (ev['fixed_point'], n_loops)]
    integers = [ev['b_train'], *(ev['eval'][k] for k in ('max_loops', 'seed', 'n_prompts', 'gd_steps'))]
    if 'lens' in ev:  # an eval.json from before the lens has none: the lens figure leaves it out
        curves += [(ev['lens'][key], n_loops) for key, *_ in LENS_PANELS]
        checked.append((ev['lens']['linear'], n_loops))
        integers.append(ev['lens']['gd_max_steps'])
        float(ev['lens']['tol'])
    for values, n in checked + [(c[stat], n) for c, n in curves for stat in ('mean', 'sem')]:
        if np.asarray([math.nan if v is None else v for v in values], dtype=float).shape != (n,):
            raise ValueError(f'a curve of {len(values)} points, not {n}')
    for value in integers:
        if type(value) is not int:
            raise TypeError(f'{value!r} where an integer belongs')


def wrap(label, width=40):
    """A long variant label over several lines, broken after its commas, so the legend stays narrow."""
    lines = ['']
    for part in (p.strip() for p in label.split(',')):
        if lines[-1] and len(lines[-1]) + len(part) + 2 > width:
            lines[-1] += ','
            lines.append(part)
        else:
            lines[-1] = f'{lines[-1]}, {part}' if lines[-1] else part
    return '\n'.join(lines)


# -----------------------------------------------------------------------------
# mean and spread over seeds

def stack(curves):
    """Curves (x, y) of unequal length onto the union of their x: x (n,), y (runs, n), NaN where a run has none."""
    x = np.unique(np.concatenate([np.asarray(c[0], dtype=float) for c in curves]))
    y = np.full((len(curves), len(x)), np.nan)
    for i, (cx, cy) in enumerate(curves):
        y[i, np.searchsorted(x, cx)] = np.asarray(cy, dtype=float)
    return x, y


def mean_std(y):
    """Mean and std (ddof 1) over runs, ignoring NaN: (n,), (n,); the std is 0 where fewer than two runs count."""
    count = (~np.isnan(y)).sum(0)
    mean = np.where(count > 0, np.nansum(y, 0) / np.maximum(count, 1), np.nan)  # NaN where no run has a value
    var = np.nansum((y - mean) ** 2, 0) / np.maximum(count - 1, 1)
    return mean, np.sqrt(var) * (count > 1)


def band(mean, spread, y=None):
    """The band's edges: mean ± spread, cut to the range the runs y (runs, n) span, so that seeds split
    between solving the task and not do not draw a band down to zero on a log axis; never below
    mean / 1000."""
    low, high = mean - spread, mean + spread
    if y is not None and len(y) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)  # an all-NaN column: no band there
            low, high = np.fmax(low, np.nanmin(y, 0)), np.fmin(high, np.nanmax(y, 0))
    return np.maximum(low, mean * 1e-3), high


def draw(ax, x, mean, spread, color, label=None, y=None, **kw):
    """A mean line and its band (see band). Few points (a short run's log) get markers, so that even a
    single point shows."""
    ax.plot(x, mean, color=color, label=label, marker='o' if len(x) < 15 else None, ms=3, **kw)
    if np.any(spread > 0):
        ax.fill_between(x, *band(mean, spread, y), color=color, alpha=0.2, lw=0)


def log_ylim(ax, means, floor=1e-7):
    """y limits from the mean lines only, so that a wide band or an exact zero doesn't squash the plot."""
    values = np.concatenate([np.ravel(m) for m in means])
    values = values[np.isfinite(values) & (values > floor)]
    if values.size:
        ax.set_ylim(values.min() / 1.5, values.max() * 1.5)


def eval_curve(runs, key, sub=None):
    """Mean over seeds and band of an eval.json curve: x, mean, spread, the runs' curves (runs, n); one
    seed: ± sem over its prompts."""
    curves = [(r['eval']['k' if key == 'err_vs_k' else 'loops'], (r['eval'][key][sub] if sub else r['eval'][key]))
              for r in runs]
    x, y = stack([(cx, c['mean']) for cx, c in curves])
    mean, spread = mean_std(y)
    if len(runs) == 1:
        spread = np.asarray(curves[0][1]['sem'], dtype=float)
    return x, mean, spread, y


def seeds(runs):
    return f'{len(runs)} seeds' if len(runs) > 1 else '1 seed, band: ± sem over prompts'


def finish(fig, axes, out, name, title):
    """One legend for all panels, outside them on the right, so that it never hides a curve; then SVG and PNG."""
    handles = {}
    for ax in axes:
        ax.grid(True, which='major', alpha=0.3)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc='outside right center', fontsize='small', frameon=False)
    fig.suptitle(title, fontsize='medium')
    for ext in ('svg', 'png'):
        path = os.path.join(out, f'{name}.{ext}')
        try:  # through a temporary file: a full disk leaves the previous figure whole
            fig.savefig(path + '.tmp', format=ext, bbox_inches='tight', dpi=150)
            os.replace(path + '.tmp', path)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.remove(path + '.tmp')
            fail(f'cannot write {path}: {err}')
        print(f'wrote {path}')
    plt.close(fig)


# -----------------------------------------------------------------------------
# the figures: each takes [(label, colour, runs)] and writes NAME.svg and NAME.png

def plot_training(variants, out, columns, name, title):
    """One panel per log column against the training iteration, one line per variant."""
    variants = [(label, color, [r for r in runs if r['log'] is not None]) for label, color, runs in variants]
    variants = [v for v in variants if v[2]]
    if not variants:
        print(f'{name}: skipped, no run has a log.csv with rows')
        return
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns) + 3, 4.5), squeeze=False,
                             layout='constrained')
    for ax, (column, ylabel) in zip(axes[0], columns):
        means = []
        for label, color, runs in variants:
            x, y = stack([(r['log']['iter'], r['log'][column]) for r in runs])
            mean, std = mean_std(y)
            draw(ax, x, mean, std, color, f'{label} ({len(runs)} seed{"s" * (len(runs) > 1)})', y=y)
            means.append(mean)
        ax.set_yscale('log')
        log_ylim(ax, means)
        ax.set_xlabel('training iteration')
        ax.set_ylabel(ylabel)
    finish(fig, list(axes[0]), out, name, title)


def with_eval(variants, name):
    """The variants' runs that have an eval.json, variants without any dropped; says so if none is left."""
    variants = [(label, color, [r for r in runs if r['eval'] is not None]) for label, color, runs in variants]
    variants = [v for v in variants if v[2]]
    if not variants:
        print(f'{name}: skipped, no run has an eval.json (python eval_extrapolation.py RUN ...)')
    return variants


def plot_extrapolation(variants, out):
    variants = with_eval(variants, 'extrapolation')
    if not variants:
        return
    fig, (ax, ax_fp) = plt.subplots(1, 2, figsize=(14, 4.5), layout='constrained')
    means, fp_means = [], []
    for label, color, runs in variants:
        x, mean, spread, y = eval_curve(runs, 'err_vs_loops')
        draw(ax, x, mean, spread, color, f'{label} ({seeds(runs)})', y=y)
        means.append(mean)
        b_train = runs[0]['eval']['b_train']
        ax.axvline(b_train, color=color, ls=':', lw=1.5)
        ax_fp.axvline(b_train, color=color, ls=':', lw=1.5)
        # the hidden state's relative change per loop; null (NaN) at loop 1 and where truncation cut tokens
        x, y = stack([(r['eval']['loops'], [math.nan if v is None else v for v in r['eval']['fixed_point']])
                      for r in runs])
        mean, std = mean_std(y)
        draw(ax_fp, x, mean, std, color, y=y)
        fp_means.append(mean)
    ax.set_yscale('log')
    log_ylim(ax, means)
    ax.set_xlabel('inference loops b')
    ax.set_ylabel(f'{ERROR}, N examples')
    ax.set_title('query error', fontsize='medium')
    ax_fp.set_yscale('log')
    log_ylim(ax_fp, fp_means, floor=0)
    ax_fp.set_xlabel('inference loops b')
    ax_fp.set_ylabel('||h_b - h_(b-1)|| / ||h_b||')
    ax_fp.set_title('relative change of the hidden state (fixed point: → 0)', fontsize='medium')
    ax.plot([], [], color='0.4', ls=':', label='b_train (dotted, in the variant\'s colour)')
    finish(fig, [ax, ax_fp], out, 'extrapolation',
           'Extrapolation: the same trained model run for more loops than it was trained with')


def plot_error_vs_examples(variants, out):
    variants = with_eval(variants, 'error_vs_examples')
    if not variants:
        return
    fig, ax = plt.subplots(figsize=(9.5, 5), layout='constrained')
    means, b_evals = [], set()
    for label, color, runs in variants:
        for sub, ls in (('model_b_train', '-'), ('model_max_loops', '--')):
            x, mean, spread, y = eval_curve(runs, 'err_vs_k', sub)
            draw(ax, x, mean, spread, color, f'{label} ({seeds(runs)})' if sub == 'model_b_train' else None,
                 y=y, ls=ls)
            means.append(mean)
        b_evals.add((runs[0]['eval']['b_train'], runs[0]['eval']['eval']['max_loops']))
    # the baselines once per distinct prompt set (task, shape and eval settings), from its first run
    prompt_sets = {}
    for _, _, runs in variants:
        c, e = runs[0]['config'], runs[0]['eval']['eval']
        key = json.dumps([c.get(k) for k in ('task', 'n_dims', 'n_points', 'noise_std', 'sparsity')] +
                         [e['seed'], e['n_prompts'], e['gd_steps']])
        prompt_sets.setdefault(key, runs[0])
    for i, run in enumerate(prompt_sets.values()):
        for name, (label, grey, marker) in BASELINE_STYLE.items():
            curve = run['eval']['err_vs_k'][name]
            suffix = f', d={run["config"]["n_dims"]} N={run["config"]["n_points"]}' if len(prompt_sets) > 1 else ''
            if name == 'gd':
                label += f' ({run["eval"]["eval"]["gd_steps"]} steps)'
            if name == 'least_squares' and run['config'].get('task') == 'linear':
                label += ' (exact, 0, from k = d)'  # drawn falling off the log axis
            ax.plot(run['eval']['k'], curve['mean'], color=grey, ls=':', lw=1.2, marker=marker, ms=4,
                    markevery=max(1, len(curve['mean']) // 12), label=label + suffix)
            means.append(np.asarray(curve['mean']))
        ax.axvline(run['config']['n_dims'], color='0.7', lw=1)
    b_train, max_loops = sorted(b_evals)[0]
    same_b = len(b_evals) == 1
    ax.plot([], [], color='0.4', ls='-', label=f'model, b = {b_train if same_b else "b_train"} (as trained)')
    ax.plot([], [], color='0.4', ls='--', label=f'model, b = {max_loops if same_b else "max_loops"}')
    ax.set_yscale('log')
    log_ylim(ax, means, floor=1e-6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('in-context examples k (grey vertical line: k = d)')
    ax.set_ylabel(ERROR)
    finish(fig, [ax], out, 'error_vs_examples',
           'Query error vs number of in-context examples: looped model and baselines on the same prompts')


LENS_PANELS = (('to_ls', '||w_b - w_LS|| / ||w_LS||', 'distance to least squares'),
               ('gd_step', 'GD steps s with w_GD(s) nearest w_b', 'the gradient-descent step it matches'),
               ('affine_err', '|f_b(x) - f_b(0) - w_b . x| / rms f_b', 'how far f_b is from linear'))


def plot_lens(variants, out):
    """The loop lens: the weights w_b the model implies after loop b, beside least squares and gradient
    descent. An x marks loops that are not linear in some seed (f_b's mean affine error or intercept above
    the tolerance, dashed in the last panel): there w_b describes the model poorly."""
    variants = [(label, color, [r for r in runs if 'lens' in (r['eval'] or {})])
                for label, color, runs in variants]
    variants = [v for v in variants if v[2]]
    if not variants:
        print('lens: skipped, no run has an eval.json with the lens (python eval_extrapolation.py RUN ...)')
        return
    fig, axes = plt.subplots(1, 3, figsize=(19, 4.5), layout='constrained')
    means = {key: [] for key, *_ in LENS_PANELS}
    for label, color, runs in variants:
        _, linear = stack([(r['eval']['loops'], r['eval']['lens']['linear']) for r in runs])
        off = (linear == 0).any(0)  # loops that are not linear in some seed
        for ax, (key, _, _) in zip(axes, LENS_PANELS):
            x, mean, spread, y = eval_curve(runs, 'lens', key)
            draw(ax, x, mean, spread, color, f'{label} ({seeds(runs)})', y=y)
            ax.plot(x[off], mean[off], 'x', color=color, ms=7)
            ax.axvline(runs[0]['eval']['b_train'], color=color, ls=':', lw=1.5)
            means[key].append(mean)
    for ax, (key, ylabel, title) in zip(axes, LENS_PANELS):
        if key == 'gd_step':
            ax.set_yscale('symlog', linthresh=1)  # 0 steps, and 1 to the cap, spaced by ratio
        else:
            ax.set_yscale('log')
            log_ylim(ax, means[key], floor=0)
        ax.set(xlabel='inference loops b', ylabel=ylabel)
        ax.set_title(title, fontsize='medium')
    lens = variants[0][2][0]['eval']['lens']
    axes[1].axhline(lens['gd_max_steps'], color='0.4', ls='-.', lw=1, label='the GD steps computed (cap)')
    axes[1].set_ylim(bottom=0)
    axes[2].axhline(lens['tol'], color='0.4', ls='--', lw=1, label='tolerance: f_b reads as linear below')
    axes[0].plot([], [], 'x', color='0.4', label='f_b not linear (some seed)')
    axes[0].plot([], [], color='0.4', ls=':', label='b_train (dotted, in the variant\'s colour)')
    finish(fig, list(axes), out, 'lens', 'The loop under a lens: the weights each loop implies (read at '
           'probe queries), next to least squares and gradient descent (best step size per step count)')


def select_variants(runs, only, labels):
    """Group the runs into variants, keep those whose label holds one of the strings in `only` (all if empty),
    label the kept ones by what differs among them alone, then apply the renames of the text `labels`.
    Returns (kept runs, [(label, indices into the kept runs)])."""
    def groups_of(runs):
        return group_runs([r['config'] for r in runs], [r['dir'] for r in runs])

    groups = groups_of(runs)
    if only:
        kept = [i for label, idx in groups if any(s in label for s in only) for i in idx]
        if not kept:
            raise ConfigError(f'--only={";".join(only)!r} keeps no variant; the variants are: '
                              f'{"; ".join(label for label, _ in groups)}')
        runs = [runs[i] for i in kept]
        groups = groups_of(runs)
    return runs, rename_variants(groups, labels)


def main(argv):
    try:
        opts, _, _, patterns = parse(argv, DEFAULTS, usage=__doc__, helps=HELPS, files=False)
        if not patterns:
            raise ConfigError('name the run directories: python plot.py out/RUN [out/RUN ...] --out=figures/')
        runs = [load_run(p) for p in find_runs(patterns, 'config.json')]
        runs, variants = select_variants(runs, split_list(opts['only']), opts['labels'])
        if os.path.exists(opts['out']) and not os.path.isdir(opts['out']):
            raise ConfigError(f'--out={opts["out"]!r} is a file, not a folder')
        os.makedirs(opts['out'], exist_ok=True)
    except (ConfigError, OSError) as err:
        fail(err)

    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    variants = [(wrap(label), colors[i % len(colors)], [runs[j] for j in idx]) for i, (label, idx) in enumerate(variants)]
    plot_training(variants, opts['out'], [('val_err', f'validation {ERROR}')], 'performance',
                  'Validation query error during training, at the final d and N and the curriculum\'s b '
                  '(mean ± std over seeds)')
    plot_training(variants, opts['out'], [('train_loss', 'training loss (MSE in the loss window)'),
                                          ('val_err', f'validation {ERROR}')], 'loss_comparison',
                  'Training loss vs validation query error (mean ± std over seeds): '
                  'a falling loss is not a solved task')
    plot_extrapolation(variants, opts['out'])
    plot_error_vs_examples(variants, opts['out'])
    plot_lens(variants, opts['out'])


if __name__ == '__main__':
    exit_on_errors()  # any I/O error not handled in main: one line, exit 2
    main(sys.argv[1:])
