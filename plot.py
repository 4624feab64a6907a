"""
Figures from the runs' logs (log.csv) and eval results (eval.json), as NAME.svg and NAME.png in --out:
performance, loss_comparison, extrapolation, error_vs_examples and lens (skipped where no run has the data).
Runs that differ only by seed (or by where and how they ran) form a variant, labelled by the keys that differ
among those --only keeps; a curve is the mean over seeds, its band their std (one seed: ± sem over prompts).

    python plot.py out/exp5_* --out=figures/
    python plot.py out/exp5_* --only="select=first" --labels="n_keep=0=full context;n_keep=32=keep 32"
"""

import math
import os
import sys
import textwrap

import matplotlib
matplotlib.use('Agg')  # files only: no display needed, works on a headless machine
matplotlib.rcParams.update({'axes.grid': True, 'grid.alpha': 0.3, 'figure.constrained_layout.use': True})
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator

from configurator import (ConfigError, exit_on_errors, fail, find_runs, group_runs, parse, read_defaults,
                          read_json, rename_variants, split_list)
from rundir import read_eval, read_log, write_file

# -----------------------------------------------------------------------------
# defaults
out = 'figures/'         # folder the figures are written to (NAME.svg and NAME.png)
only = ''                # keep the variants whose label holds any of these substrings (split at ; or ,)
labels = ''              # rename variants: old=new (split at the last =), split at ; or ,
# end of defaults
# -----------------------------------------------------------------------------
DEFAULTS, HELPS = read_defaults(__file__, '# defaults', '# end of defaults')
ERROR = 'query error (squared error / d)'
# the baselines thin, grey, dotted and marked, so that colours and solid / dashed lines stay for the models
BASELINE_STYLE = {'least_squares': ('least squares{exact}', '0.0', 'o'), 'ridge': ('ridge', '0.35', 's'),
                  'knn': ('3-nearest neighbours', '0.55', '^'), 'averaging': ('averaging', '0.55', 'v'),
                  'gd': ('gradient descent ({gd_steps} steps)', '0.2', 'x')}
# the lens's families: line style (distances), marker (spectral view), legend
LENS_STYLE = {'least_squares': (':', None, 'least squares (the null is as far from it as w_b)'),
              'gd': ('-', 'D', 'gradient descent (step 1 / largest eigenvalue)'),
              'ridge': ('--', 's', 'ridge'), 'newton': ('-.', '^', 'iterative Newton (Newton-Schulz)')}


def load_run(path):
    """A run's config.json, log.csv and eval.json; one unreadable or lacking what is drawn: a ConfigError."""
    config_file, log, ev = (os.path.join(path, name) for name in ('config.json', 'log.csv', 'eval.json'))
    config = read_json(config_file)
    if not isinstance(config, dict) or not all(type(config.get(k)) is int for k in ('n_dims', 'n_points')):
        raise ConfigError(f'{config_file} is not the config.json of a run (no n_dims and n_points)')
    run = {'dir': path, 'config': config, 'log': None, 'eval': read_eval(ev) if os.path.isfile(ev) else None}
    rows = read_log(log, math.inf)
    if rows:  # {column: (rows,)}; an empty cell (a column an older log lacks) is NaN
        run['log'] = {col: np.array([float(r[col] or 'nan') for r in rows]) for col in rows[0]}
        missing = {'iter', 'train_loss', 'val_err'} - run['log'].keys()  # the columns drawn
        if missing:
            raise ConfigError(f'{log} is malformed (no column {", ".join(sorted(missing))})')
    step = ((run['eval'] or {}).get('checkpoint') or {}).get('iter')  # a run extended after its evaluation
    if run['log'] is not None and step is not None and step < run['log']['iter'][-1]:
        print(f'warning: {path}/eval.json is of step {step} and its log runs to step '
              f'{run["log"]["iter"][-1]:.0f}: eval_extrapolation.py {path} brings it up to date')
    return run


# ----- mean and spread over seeds

def mean_std(y):
    """Mean and std (ddof 1) over runs y (runs, n), ignoring NaN; the std is 0 where under two runs count."""
    count = (~np.isnan(y)).sum(0)
    mean = np.where(count > 0, np.nansum(y, 0) / np.maximum(count, 1), np.nan)  # NaN where no run has a value
    var = np.nansum((y - mean) ** 2, 0) / np.maximum(count - 1, 1)
    return mean, np.sqrt(var) * (count > 1)


def band(mean, spread, y=None):
    """The band's edges: mean ± spread, cut to the range the runs y (runs, n) span, lest seeds split between
    solving the task and not draw it down to zero on a log axis; never below mean / 1000."""
    low, high = mean - spread, mean + spread
    if y is not None and len(y) > 1:  # fmin and fmax skip NaN: an all-NaN column leaves the band as it is
        low, high = np.fmax(low, np.fmin.reduce(y, 0)), np.fmin(high, np.fmax.reduce(y, 0))
    return np.maximum(low, mean * 1e-3), high


def draw(ax, curves, color, label=None, sem=None, **kw):
    """The mean line of the runs' curves [(x, y)], of unequal length, and its band (see band): the std over
    the runs, or a lone run's sem if given. Few points (a short run's log) get markers, so even one shows."""
    x = np.unique(np.concatenate([np.asarray(cx, dtype=float) for cx, _ in curves]))
    y = np.full((len(curves), len(x)), np.nan)  # (runs, x): NaN where a run has no value, or a null
    for i, (cx, cy) in enumerate(curves):
        y[i, np.searchsorted(x, cx)] = np.asarray(cy, dtype=float)
    mean, spread = mean_std(y)
    spread = np.asarray(sem, dtype=float) if len(curves) == 1 and sem is not None else spread
    ax.plot(x, mean, color=color, label=label, marker='o' if len(x) < 15 else None, ms=3, **kw)
    if np.any(spread > 0):
        ax.fill_between(x, *band(mean, spread, y), color=color, alpha=0.2, lw=0)
    return x, mean


def draw_eval(ax, runs, color, label, key, sub=None, **kw):
    """draw for the eval.json curve ev[key] or ev[key][sub]: one seed's band is ± sem over prompts."""
    curves = [r['eval'][key][sub] if sub else r['eval'][key] for r in runs]
    x = 'k' if key == 'err_vs_k' else 'loops'
    seeds = f'{len(runs)} seeds' if len(runs) > 1 else '1 seed, band: ± sem over prompts'
    return draw(ax, [(r['eval'][x], c['mean']) for r, c in zip(runs, curves)], color,
                label and f'{label} ({seeds})', curves[0]['sem'], **kw)


def label_axes(ax, xlabel, ylabel, title=None, means=None, floor=1e-7):
    """Axis labels and title; given the mean lines, a log y axis scaled to them alone (not a band or a 0)."""
    values = np.concatenate([np.ravel(m) for m in means or [[]]])
    values = values[np.isfinite(values) & (values > floor)]
    if values.size:  # nothing to scale by (every value null, as in a damaged eval.json): a linear axis
        ax.set_yscale('log')
        ax.set_ylim(values.min() / 1.5, values.max() * 1.5)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title or '', fontsize='medium')


def finish(fig, out, name, title):
    """One legend for all panels, outside them on the right, so that it never hides a curve; SVG and PNG."""
    # one legend entry a label: the panels repeat the variants'
    handles = {label: h for ax in fig.axes for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc='outside right center', fontsize='small', frameon=False)
    fig.suptitle(title, fontsize='medium')
    for ext in ('svg', 'png'):  # through a temporary file: a full disk leaves the previous figure whole
        path = os.path.join(out, f'{name}.{ext}')
        write_file(path, lambda f: fig.savefig(f, format=ext, bbox_inches='tight', dpi=150), 'wb')
        print(f'wrote {path}')
    plt.close(fig)


# ----- the figures: each takes [(label, colour, the runs it can draw)] and writes NAME.svg and NAME.png

VAL_ERR = ('val_err', f'validation {ERROR}')
TRAINING = {  # name: [(log column, its axis label)], title
    'performance': ([VAL_ERR], 'Validation query error during training, at the final d and N and the '
                    'curriculum\'s b (mean ± std over seeds)'),
    'loss_comparison': ([('train_loss', 'training loss (MSE in the loss window)'), VAL_ERR],
                        'Training loss vs validation query error (mean ± std over seeds): a falling loss is '
                        'not a solved task')}


def plot_training(variants, out, name):
    """One panel per log column against the training iteration, one line per variant."""
    columns, title = TRAINING[name]
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns) + 3, 4.5), squeeze=False)
    for ax, (column, ylabel) in zip(axes[0], columns):
        means = [draw(ax, [(r['log']['iter'], r['log'][column]) for r in runs], color,
                      f'{label} ({len(runs)} seed{"s" * (len(runs) > 1)})')[1]
                 for label, color, runs in variants]
        label_axes(ax, 'training iteration', ylabel, means=means)
    finish(fig, out, name, title)


def plot_extrapolation(variants, out, name):
    fig, (ax, ax_fp) = plt.subplots(1, 2, figsize=(14, 4.5))
    means, fp_means = [], []
    for label, color, runs in variants:
        means.append(draw_eval(ax, runs, color, label, 'err_vs_loops')[1])
        for a in (ax, ax_fp):
            a.axvline(runs[0]['eval']['b_train'], color=color, ls=':', lw=1.5)
        # the hidden state's relative change per loop; null (NaN) at loop 1 and where truncation cut tokens
        fp_means.append(draw(ax_fp, [(r['eval']['loops'], r['eval']['fixed_point']) for r in runs], color)[1])
    label_axes(ax, 'inference loops b', f'{ERROR}, N examples', 'query error', means)
    label_axes(ax_fp, 'inference loops b', '||h_b - h_(b-1)|| / ||h_b||',
               'relative change of the hidden state (fixed point: → 0)', fp_means, floor=0)
    ax.plot([], [], color='0.4', ls=':', label='b_train (dotted, in the variant\'s colour)')
    finish(fig, out, name, 'Extrapolation: the same trained model run for more loops than in training')


def plot_error_vs_examples(variants, out, name):
    fig, ax = plt.subplots(figsize=(9.5, 5))
    means, b_evals, prompt_sets = [], set(), {}
    for label, color, runs in variants:
        for sub, ls, legend in (('model_b_train', '-', label), ('model_max_loops', '--', None)):
            means.append(draw_eval(ax, runs, color, legend, 'err_vs_k', sub, ls=ls)[1])
        c, e = runs[0]['config'], runs[0]['eval']
        b_evals.add((e['b_train'], e['eval']['max_loops']))
        # the baselines once per distinct prompt set (task, shape and eval settings), from its first run
        key = [c.get(k) for k in ('task', 'n_dims', 'n_points', 'noise_std', 'sparsity')]
        prompt_sets.setdefault(str(key + [e['eval'][k] for k in ('seed', 'n_prompts', 'gd_steps')]), runs[0])
    for run in prompt_sets.values():
        c, e = run['config'], run['eval']
        exact = ' (exact, 0, from k = d)' if c.get('task') == 'linear' else ''  # it falls off the log axis
        shape = f', d={c["n_dims"]} N={c["n_points"]}' if len(prompt_sets) > 1 else ''
        for key, (label, grey, marker) in BASELINE_STYLE.items():
            means.append(e['err_vs_k'][key]['mean'])
            ax.plot(e['k'], means[-1], color=grey, ls=':', lw=1.2, marker=marker, ms=4,
                    markevery=max(1, len(e['k']) // 12), label=label.format(exact=exact, **e['eval']) + shape)
        ax.axvline(c['n_dims'], color='0.7', lw=1)
    (b_train, max_loops), same_b = sorted(b_evals)[0], len(b_evals) == 1
    ax.plot([], [], color='0.4', ls='-', label=f'model, b = {b_train if same_b else "b_train"} (as trained)')
    ax.plot([], [], color='0.4', ls='--', label=f'model, b = {max_loops if same_b else "max_loops"}')
    label_axes(ax, 'in-context examples k (grey vertical line: k = d)', ERROR, means=means, floor=1e-6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    finish(fig, out, name,
           'Query error vs number of in-context examples: looped model and baselines on the same prompts')


def plot_lens(variants, out, name):
    """The weights w_b after loop b against each family's nearest iterate and the noise null; w_b's shrinkage
    per eigen-direction beside the families' filters; how linear f_b is (x: not linear in some seed)."""
    fig, (ax_d, ax_s, ax_l) = plt.subplots(1, 3, figsize=(19, 4.5))
    dist_means, lin_means = [], []
    for label, color, runs in variants:
        lenses, b_train = [r['eval']['lens'] for r in runs], runs[0]['eval']['b_train']
        nonlinear = [b for r in runs for b, ok in zip(r['eval']['loops'], r['eval']['lens']['linear'])
                     if not ok]  # in some seed
        # thick: w_b's distance to least squares and to each family's nearest iterate; thin: the null's
        curves = [('least_squares', 'to_ls', 1.5)] + [(f, key, lw) for f in lenses[0]['families']
                                                      for key, lw in (('dist', 1.5), ('null', 0.7))]
        for family, key, lw in curves:
            stat = [lens['to_ls'] if key == 'to_ls' else lens['families'][family][key] for lens in lenses]
            dist_means.append(draw(ax_d, [(r['eval']['loops'], s['mean']) for r, s in zip(runs, stat)], color,
                                   sem=stat[0]['sem'], ls=LENS_STYLE[family][0], lw=lw)[1])
        to_ls = dist_means[-len(curves)]  # the first curve: least squares
        x, mean = draw_eval(ax_l, runs, color, label, 'lens', 'affine_err')  # the variant's legend entry
        # the intercept too: `linear` (the x marks) holds both below the tolerance
        lin_means += [mean, draw_eval(ax_l, runs, color, None, 'lens', 'intercept', ls='--')[1]]
        for ax, m in ((ax_d, to_ls), (ax_l, mean)):
            ax.plot(x[np.isin(x, nonlinear)], m[np.isin(x, nonlinear)], 'x', color=color, ms=7)
            ax.axvline(b_train, color=color, ls=':', lw=1.5)
        for b, ls in {runs[0]['eval']['eval']['max_loops']: '--', b_train: '-'}.items():  # once if equal
            if b in lenses[0]['spectrum']['loops']:  # b_train, every tenth loop and the last
                draw_spectrum(ax_s, lenses, b, color, ls)
    label_axes(ax_d, 'inference loops b', '||w_b - w|| / ||w_LS||, w: the nearest iterate',
               'distance to each family (thick) and the noise null\'s (thin)', dist_means)
    label_axes(ax_s, 'eigenvalue of XᵀX / the largest, binned', 'shrinkage 1 - (w_b)_i / (w_LS)_i',
               'shrinkage per eigen-direction (0: as least squares)')
    ax_s.set_xscale('log')
    for axis in (ax_s.xaxis.set_major_formatter, ax_s.xaxis.set_minor_formatter):  # 0.1 0.2 0.5 1: no overlap
        axis(FuncFormatter(lambda v, _: f'{v:g}' if f'{v:.0e}'[0] in '125' else ''))
    label_axes(ax_l, 'inference loops b', '|f_b(x) - f_b(0) - w_b . x| (solid), |f_b(0)| (dashed) / rms f_b',
               'how far f_b is from linear (x: either above the line)', lin_means, floor=0)
    ax_l.axhline(lenses[0]['tol'], color='0.4', ls='--', lw=1, label='tolerance: f_b reads as linear below')
    for ls, marker, text in LENS_STYLE.values():  # the key to the families: line style, spectrum marker
        ax_d.plot([], [], color='0.4', ls=ls, marker=marker, ms=5, mfc='none', label=text)
    ax_d.plot([], [], 'x', color='0.4', label='f_b not linear (some seed)')
    ax_d.plot([], [], color='0.4', ls=':', label='b_train (dotted, in the variant\'s colour)')
    ax_s.plot([], [], color='0.4', marker='o', lw=2, label='w_b at b_train (solid) and the last b (dashed)')
    finish(fig, out, name, 'The loop under a lens: the weights each loop implies (read at probe queries) '
           'against gradient descent, ridge, Newton and least squares, and a noise null')


def draw_spectrum(ax, lenses, b, color, ls):
    """w_b's binned shrinkage at loop b (thick, mean and spread over the seeds' lenses) and each family's
    filter at its fitted parameters (thin, its marker)."""
    spectra = [lens['spectrum'] for lens in lenses]
    i, edges = spectra[0]['loops'].index(b), np.array(spectra[0]['edges'])  # one prompt set: the same bins
    x = np.sqrt(edges[1:] * edges[:-1])  # the bins' geometric centres
    draw(ax, [(x, s['model'][i]) for s in spectra], color, ls=ls, lw=2)
    for family in lenses[0]['families']:  # mean_std's mean: NaN where no eigenvalue fell in a bin
        mean = mean_std(np.array([s[family][i] for s in spectra], dtype=float))[0]
        ax.plot(x, mean, color=color, ls=ls, lw=0.7, marker=LENS_STYLE[family][1], ms=5, mfc='none')


def select_variants(runs, only, labels):
    """(runs, [(label, indices into them)]): the variants whose label holds a string in `only` (all if empty),
    labelled by what differs among the kept alone, then renamed as the text `labels` says."""
    groups = group_runs([r['config'] for r in runs], [r['dir'] for r in runs])
    if only:
        kept = [i for label, idx in groups if any(s in label for s in only) for i in idx]
        if not kept:
            raise ConfigError(f'--only={";".join(only)!r} keeps no variant; the variants are: '
                              f'{"; ".join(label for label, _ in groups)}')
        return select_variants([runs[i] for i in kept], [], labels)
    return runs, rename_variants(groups, labels)


def main(argv):
    try:
        opts, _, _, patterns = parse(argv, DEFAULTS, usage=__doc__, helps=HELPS, files=False)
        if not patterns:
            raise ConfigError('name the run directories: python plot.py out/RUN [out/RUN ...] --out=figures/')
        runs = [load_run(p) for p in find_runs(patterns, ['config.json'])]
        runs, variants = select_variants(runs, split_list(opts['only']), opts['labels'])
        os.makedirs(opts['out'], exist_ok=True)  # a file there: one error line
    except (ConfigError, OSError) as err:
        fail(err)

    wrap = lambda label: textwrap.fill(label, 40, break_long_words=False, break_on_hyphens=False)
    variants = [(wrap(label), f'C{i}', [runs[j] for j in idx]) for i, (label, idx) in enumerate(variants)]
    has_log, has_eval = (lambda r: r['log'] is not None), (lambda r: r['eval'] is not None)
    log, ev = 'a log.csv with rows', 'an eval.json (python eval_extrapolation.py RUN ...)'
    for name, can_draw, needs, plot_figure in (
            ('performance', has_log, log, plot_training), ('loss_comparison', has_log, log, plot_training),
            ('extrapolation', has_eval, ev, plot_extrapolation),
            ('error_vs_examples', has_eval, ev, plot_error_vs_examples),
            ('lens', lambda r: 'explains' in (r['eval'] or {}).get('lens', {}),
             'an eval.json with the calibrated lens (python eval_extrapolation.py RUN ...)', plot_lens)):
        kept = [(label, color, drawn) for label, color, runs in variants  # a variant with none: left out
                if (drawn := [r for r in runs if can_draw(r)])]
        if kept:
            plot_figure(kept, opts['out'], name)
        else:
            print(f'{name}: skipped, no run has {needs}')


if __name__ == '__main__':
    exit_on_errors()  # any I/O error not handled in main: one line, exit 2
    main(sys.argv[1:])
