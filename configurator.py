"""The command line every script shares: `--key=value` flags and config files checked against the defaults'
types (no exec), `--help` from the comments beside the defaults, one-line errors, the device, and the names
of run directories. Imports no torch at load time, so plot.py stays light."""

import ast
import contextlib
import difflib
import glob
import hashlib
import json
import math
import os
import re
import runpy
import shlex
import sys
import tempfile


class ConfigError(Exception):
    """A bad flag, config file or input file: reported in one line, exit code 2, nothing written."""


def fail(err, code=2):
    print(f'error: {err}', file=sys.stderr)
    sys.exit(code)


def exit_on_errors():
    """An uncaught I/O error (a full disk, a closed pipe) or ConfigError ends the script in one `error:` line,
    exit 2; Ctrl-C in one line, 130; code bugs keep their traceback. Paths not in UTF-8 print escaped."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError):  # a stand-in stream (as in tests) has no reconfigure
            stream.reconfigure(errors='backslashreplace')

    def hook(kind, err, tb):
        if issubclass(kind, BrokenPipeError):  # the reader is gone: the flush at exit must not fail again
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            err = 'the output was closed before the end (broken pipe)'
        if not issubclass(kind, (KeyboardInterrupt, OSError, ConfigError)):
            return sys.__excepthook__(kind, err, tb)  # a bug: its traceback
        interrupted = issubclass(kind, KeyboardInterrupt)
        with contextlib.suppress(OSError, ValueError):  # stderr may be gone too: the exit code says it
            print('stopped by Ctrl-C' if interrupted else f'error: {err}', file=sys.stderr)
        sys.exit(130 if interrupted else 2)
    sys.excepthook = hook


# ----- defaults and --help from the script that holds them, then flags and config files over them

def read_defaults(path, start, end):
    """{name: value}, {name: comment} of the `name = literal  # comment` lines between the markers start and
    end of a file: the one source of both the defaults and --help, so the two cannot drift apart."""
    with open(path) as f:
        text = f.read()
    defaults, helps = {}, {}
    for line in text[text.index(start):text.index(end, text.index(start))].splitlines():
        m = re.match(r"^([a-z]\w*)\s*=\s*(.+?)(?:\s+#\s*(.*))?$", line)
        with contextlib.suppress(ValueError, SyntaxError, AttributeError):
            value = ast.literal_eval(m.group(2))
            if type(value) in (int, float, bool, str):
                defaults[m.group(1)], helps[m.group(1)] = value, m.group(3) or ''
    return defaults, helps


def help_text(usage, defaults, helps, choices=None):
    lines = [usage.strip(), '', 'flags (--key=value, each with its default; a later value wins):']
    width = max(len(f'--{k}={v!r}') for k, v in defaults.items())
    for key, value in defaults.items():
        meaning = helps.get(key) or ' | '.join((choices or {}).get(key, ()))
        lines.append(f'  {f"--{key}={value!r}":<{width}}  {meaning}'.rstrip())
    return '\n'.join(lines)


def set_value(config, key, value, source, defaults, choices):
    """config[key] = value, checked against the default's type (an int for a float is fine) and choices."""
    if key not in defaults:
        close = ', '.join(difflib.get_close_matches(key, defaults, n=3))
        raise ConfigError(f'{source}: unknown key {key!r}' + (f' (did you mean {close}?)' if close else ''))
    default = defaults[key]
    if isinstance(default, bool) and isinstance(value, str) and value.lower() in ('true', 'false'):
        value = value.lower() == 'true'
    if isinstance(default, float) and type(value) is int:
        value = float(value)
    if type(value) is not type(default):
        kind = 'True or False' if isinstance(default, bool) else type(default).__name__
        raise ConfigError(f'{source}: {key} takes {kind}, got {value!r}')
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f'{source}: {key} must be a finite number, got {value!r}')
    if key in choices and value not in choices[key]:
        raise ConfigError(f'{source}: {key} must be one of {" | ".join(choices[key])}, got {value!r}')
    config[key] = value


def parse(argv, defaults, choices=None, usage='', helps=None, files=True, lowest=None, given=None):
    """Defaults, then each config file (if files) or --key=value in order; lowest: {key: least value}; given
    gets the keys set. (config, base: the defaults after the files alone, stems: their names, the rest)"""
    choices, given = choices or {}, set() if given is None else given
    if '--help' in argv or '-h' in argv:
        print(help_text(usage, defaults, helps or {}, choices))
        sys.exit(0)
    config, base, stems, positional = dict(defaults), dict(defaults), [], []
    for arg in argv:
        if arg.startswith('--'):  # --key=value: a Python literal, or else a bare word
            key, eq, raw = arg[2:].partition('=')
            if not eq:
                raise ConfigError(f'--{key}: write flags as --{key}=value (--help lists them)')
            value = raw  # a string flag takes the text as it is (--run_name=123 is the name '123')
            if not isinstance(defaults.get(key), str):
                with contextlib.suppress(ValueError, SyntaxError):
                    value = ast.literal_eval(raw)
            set_value(config, key, value, f'--{key}', defaults, choices)
            given.add(key)
        elif files:  # a config file: Python that assigns some of the defaults' names, run on its own
            try:
                namespace = runpy.run_path(arg)
            except BaseException as err:  # SystemExit too: a config file does not end the run
                raise ConfigError(f'config file {arg!r} does not run: {type(err).__name__}: {err}') from None
            for key, value in namespace.items():  # its imports and helpers aside
                if not (key.startswith('_') or callable(value) or type(value).__name__ == 'module'):
                    set_value(config, key, value, arg, defaults, choices)
                    base[key] = config[key]
                    given.add(key)
            stems.append(os.path.splitext(os.path.basename(arg))[0])
        else:
            positional.append(arg)
    for key, low in (lowest or {}).items():
        if config[key] < low:
            raise ConfigError(f'--{key}={config[key]}: must be at least {low}')
    return config, base, stems, positional


def check_device(name):
    """The torch.device a --device value names (auto: cuda, then mps, then cpu), or a ConfigError."""
    import torch  # here, not at load time
    available = {'cpu': True, 'cuda': torch.cuda.is_available(), 'mps': torch.backends.mps.is_available()}
    if name == 'auto':
        name = next(kind for kind in ('cuda', 'mps', 'cpu') if available[kind])
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f'--device={name!r}: use auto, cpu, cuda, cuda:N or mps') from None
    if not available.get(device.type, False):
        raise ConfigError(f'--device={name!r}: not available here (use auto, cpu, cuda, cuda:N or mps)')
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f'--device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)')
    return device


# ----- run directories: naming, finding, grouping by variant

# what changes where, how fast or how long a run runs, not what it computes: left out of the run's name
NOT_IN_NAME = ('out_dir', 'run_name', 'eval_interval', 'log_interval', 'init_from', 'overwrite', 'device',
               'compile', 'seed', 'max_iters', 'checkpoint_loops', 'wandb_log', 'wandb_project',
               'wandb_run_name')
ADDED = {'optimizer': 'adamw'}  # train.py flags added since runs were saved, at what a run without them used


def run_dir(config, base, stems):
    """out_dir/<config files>,<flags that differ from them>,seed=S: runs that differ only by seed sort
    together. A run's name never holds where it ran or for how long, so a resumed run can run longer."""
    if config['run_name']:
        name = config['run_name']
        parts = name.replace(os.altsep or os.sep, os.sep).split(os.sep)
        if os.path.isabs(name) or '..' in parts or os.path.normpath(name) == '.' or not name.strip():
            raise ConfigError(f'--run_name={name!r}: must be a plain name inside out_dir')
        return os.path.join(config['out_dir'], name)
    name = ','.join(stems + [f'{k}={v}' for k, v in config.items() if k not in NOT_IN_NAME and v != base[k]])
    raw = os.fsencode(name)  # a file name holds 255 bytes at most (not characters): past 200, a hash
    if len(raw) > 200:  # cut at whole characters
        cut = next(name[:n] for n in range(200, 0, -1) if len(os.fsencode(name[:n])) <= 200)
        name = cut.rsplit(',', 1)[0] + ',+' + hashlib.sha1(raw).hexdigest()[:8]
    return os.path.join(config['out_dir'], f'{name},seed={config["seed"]}'.lstrip(','))


def makeable(path):
    """The nearest existing folder at or above path, if this process may make path there, or a ConfigError."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f'cannot make {path}: {parent} is a file, not a directory')
    try:  # a file with no name (O_TMPFILE): a real write, which root's permissions and a read-only disk pass
        tempfile.TemporaryFile(dir=parent).close()  # or fail as they would, and which leaves nothing
    except OSError as err:
        raise ConfigError(f'cannot make or write {path}: {parent}: {err.strerror}') from None
    return parent


def shell_command(script, args):
    return shlex.join(['python', script, *args])  # as one would type it, quoted for the shell


def find_runs(patterns, need):
    """Run directories named or matched by the patterns that hold one of the files `need`, in order, once."""
    runs = []
    for pattern in patterns:  # a path that is there is that run, whatever it holds ([1], *); else a pattern
        matches = [p for p in ([pattern] if os.path.exists(pattern) else sorted(glob.glob(pattern)))
                   if os.path.isdir(p)]
        found = [p for p in matches if any(os.path.isfile(os.path.join(p, n)) for n in need)]
        if not found:
            raise ConfigError(f'{pattern}: no run directory with a {" or ".join(need)} there')
        for p in [p for p in matches if p not in found]:
            print(f'skipping {p}: no {" or ".join(need)}')
        runs += [os.path.normpath(p) for p in found if os.path.normpath(p) not in runs]
    return runs


def group_runs(configs, names=None):
    """Runs whose configs differ only by seed (or by where and how they ran) form one variant.
    Returns [(label, [indices into configs])]; labels name the config keys that differ between variants."""
    groups, configs = {}, [{**ADDED, **c} for c in configs]  # a run saved before a flag ran at its old value
    for i, c in enumerate(configs):
        key = json.dumps({k: v for k, v in sorted(c.items()) if k not in NOT_IN_NAME})
        groups.setdefault(key, []).append(i)
    firsts = [configs[idx[0]] for idx in groups.values()]
    keys = list(dict.fromkeys(k for c in configs for k in c if k not in NOT_IN_NAME))
    differ = [k for k in keys if len({json.dumps(c.get(k)) for c in firsts}) > 1]
    labels = [', '.join(f'{k}={c.get(k)}' for k in differ) for c in firsts]
    if len(labels) == 1:  # one variant: name it after its run directory, less the seed
        labels = [re.sub(r',?seed=\d+$', '', os.path.basename(names[0]) if names else '') or 'model']
    return list(zip(labels, groups.values()))


def split_list(text):
    """'a;b' or 'a,b' -> ['a', 'b']: at ';' where the text holds one (variant names hold ',')."""
    return [s.strip() for s in text.split(';' if ';' in text else ',') if s.strip()]


def rename_variants(groups, labels):
    """group_runs' [(label, idx)] renamed by a --labels text (old=new, split at ; or ,), or a ConfigError."""
    rename = {}
    for entry in split_list(labels):
        old, eq, new = entry.rpartition('=')
        if not eq or old not in [label for label, _ in groups]:
            raise ConfigError(f'--labels: {entry!r} names no variant (write old=new); the variants are: '
                              f'{"; ".join(label for label, _ in groups)}')
        rename[old] = new
    return [(rename.get(label, label), idx) for label, idx in groups]


def read_json(path):
    """A JSON file, or a one-line ConfigError naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigError(f'{path} is not readable JSON ({type(err).__name__}: {err})') from None
