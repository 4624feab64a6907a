"""
The command line every script shares: `--key=value` flags and config files checked against the defaults'
types (no exec), `--help` read from the comments beside the defaults, one-line usage errors, the device,
and the names of run directories. Imports no torch at load time, so plot.py stays light.

    defaults, helps = read_defaults(__file__)     # a script's `name = value  # meaning` lines
    config, base, stems = parse(sys.argv[1:], defaults, choices, usage=__doc__, helps=helps)
"""

import ast
import atexit
import contextlib
import difflib
import glob
import json
import os
import re
import runpy
import shlex
import sys


class ConfigError(Exception):
    """A bad flag, config file or input file: reported in one line, exit code 2, nothing written."""


def fail(err):
    print(f'error: {err}', file=sys.stderr)
    sys.exit(2)


def exit_on_errors():
    """Make an I/O error that no code caught (a full disk, a closed pipe, a file gone) or a ConfigError
    end the script with one `error:` line and exit code 2, and Ctrl-C with one line and 130: a script
    run by hand or by a sweep never ends in a traceback for a fault of its surroundings. Code bugs
    still print their traceback."""
    def hook(kind, err, tb):
        if issubclass(kind, KeyboardInterrupt):
            message, code = 'stopped by Ctrl-C', 130
        elif issubclass(kind, BrokenPipeError):
            message, code = 'error: the output was closed before the end (broken pipe)', 2
            try:  # stdout's reader is gone: the flush at exit must not fail again
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        elif issubclass(kind, (OSError, ConfigError)):
            message, code = f'error: {err}', 2
        else:
            return sys.__excepthook__(kind, err, tb)
        try:
            print(message, file=sys.stderr)
        except (OSError, ValueError):
            pass  # stderr is gone too: the exit code still says it
        sys.exit(code)
    sys.excepthook = hook


# -----------------------------------------------------------------------------
# defaults and their help, from the script that holds them

def read_defaults(path, start=None, end=None):
    """{name: value}, {name: comment} of the module-level `name = literal  # comment` lines of a file,
    between the lines that hold `start` and `end` (markers) if given. The one source of both the
    defaults and --help, so the two cannot drift apart."""
    with open(path) as f:
        lines = f.read().splitlines()
    if start is not None:
        first = next(i for i, line in enumerate(lines) if start in line)
        last = next(i for i, line in enumerate(lines) if i > first and end in line)
        lines = lines[first:last]
    defaults, helps = {}, {}
    for line in lines:
        m = re.match(r"^(\w+)\s*=\s*(.+?)(?:\s+#\s*(.*))?$", line)
        if not m or m.group(1).startswith('_') or m.group(1).isupper():
            continue
        try:
            value = ast.literal_eval(m.group(2))
        except (ValueError, SyntaxError):
            continue
        if type(value) in (int, float, bool, str):
            defaults[m.group(1)] = value
            helps[m.group(1)] = m.group(3) or ''
    return defaults, helps


def help_text(usage, defaults, helps, choices=None):
    lines = [usage.strip(), '', 'flags (--key=value, each with its default; a later value wins):']
    width = max(len(f'--{k}={v!r}') for k, v in defaults.items())
    for key, value in defaults.items():
        meaning = helps.get(key, '')
        if choices and key in choices and not meaning:
            meaning = ' | '.join(choices[key])
        lines.append(f'  {f"--{key}={value!r}":<{width}}  {meaning}'.rstrip())
    return '\n'.join(lines)


# -----------------------------------------------------------------------------
# flags and config files

def coerce(key, value, source, defaults, choices):
    default = defaults[key]
    if isinstance(value, str) and not isinstance(default, str):
        if isinstance(default, bool) and value.lower() in ('true', 'false'):
            return value.lower() == 'true'
        raise ConfigError(f'{source}: {key} takes {type(default).__name__}, got {value!r}')
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f'{source}: {key} takes True or False, got {value!r}')
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # an int where a float is expected is fine
    if type(value) is not type(default):
        raise ConfigError(f'{source}: {key} takes {type(default).__name__}, got {value!r}')
    if isinstance(value, float) and value != value or value in (float('inf'), float('-inf')):
        raise ConfigError(f'{source}: {key} must be a finite number, got {value!r}')
    if key in choices and value not in choices[key]:
        raise ConfigError(f'{source}: {key} must be one of {" | ".join(choices[key])}, got {value!r}')
    return value


def set_value(config, key, value, source, defaults, choices):
    if key not in defaults:
        close = difflib.get_close_matches(key, defaults, n=3)
        hint = f' (did you mean {", ".join(close)}?)' if close else ''
        raise ConfigError(f'{source}: unknown key {key!r}{hint}')
    config[key] = coerce(key, value, source, defaults, choices)


def parse_flag(arg, config, defaults, choices):
    """Apply one --key=value: the value read as a Python literal, or else as a bare word."""
    key, eq, raw = arg[2:].partition('=')
    if not eq:
        raise ConfigError(f'--{key}: write flags as --{key}=value (--help lists them)')
    if isinstance(defaults.get(key), str):
        value = raw  # a string flag takes the text as it is (--run_name=123 is the name '123')
    else:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # reported by coerce as the wrong type
    set_value(config, key, value, f'--{key}', defaults, choices)


def run_python_file(path, what='config file'):
    """The plain names a Python file of assignments defines, run in a namespace of its own."""
    if not os.path.isfile(path):
        raise ConfigError(f'{what} {path!r} does not exist')
    try:
        namespace = runpy.run_path(path)
    except BaseException as err:  # SystemExit too: a config file does not end the run
        raise ConfigError(f'{what} {path!r} does not run: {type(err).__name__}: {err}') from None
    return {k: v for k, v in namespace.items()
            if not k.startswith('_') and not callable(v) and type(v).__name__ != 'module'}


def read_config_file(path, config, base, defaults, choices):
    """A config file is Python that assigns some of the defaults' names."""
    for key, value in run_python_file(path).items():
        set_value(config, key, value, path, defaults, choices)
        base[key] = config[key]


def parse(argv, defaults, choices=None, usage='', helps=None, files=True):
    """Defaults, then each config file (if files) or --key=value in order; --help prints and exits 0.
    Returns (config, base, stems, positional): base is what the config files alone make of the defaults,
    stems their names, positional the other arguments (run directories, for the scripts that take them)."""
    choices = choices or {}
    if '--help' in argv or '-h' in argv:
        print(help_text(usage, defaults, helps or {}, choices))
        sys.exit(0)
    config, base, stems, positional = dict(defaults), dict(defaults), [], []
    for arg in argv:
        if arg.startswith('--'):
            parse_flag(arg, config, defaults, choices)
        elif files:
            read_config_file(arg, config, base, defaults, choices)
            stems.append(os.path.splitext(os.path.basename(arg))[0])
        else:
            positional.append(arg)
    return config, base, stems, positional


# -----------------------------------------------------------------------------
# the device (torch is imported here, not at load time)

def resolve_device(name):
    import torch
    if name != 'auto':
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device('cuda')
    if torch.backends.mps.is_available():
        return torch.device('mps')
    return torch.device('cpu')


def check_device(name):
    """The torch.device a --device value names, or a ConfigError if it is malformed or not here."""
    import torch
    try:
        device = resolve_device(name)
    except RuntimeError:
        raise ConfigError(f'--device={name!r}: use auto, cpu, cuda, cuda:N or mps') from None
    available = {'cpu': True, 'cuda': torch.cuda.is_available(), 'mps': torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise ConfigError(f'--device={name!r}: not available here (use auto, cpu, cuda, cuda:N or mps)')
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f'--device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)')
    return device


# -----------------------------------------------------------------------------
# run directories: naming, finding, grouping by variant

# what changes where, how fast or how long a run runs, not what it computes: left out of the run's name
NOT_IN_NAME = ('out_dir', 'run_name', 'eval_interval', 'log_interval', 'init_from', 'overwrite', 'device',
               'compile', 'seed', 'max_iters', 'checkpoint_loops')


def run_dir(config, base, stems):
    """out_dir/<config files>,<flags that differ from them>,seed=S: runs that differ only by seed sort
    together. A run's name never holds where it ran or for how long, so a resumed run can run longer."""
    if config['run_name']:
        name = config['run_name']
        parts = name.replace(os.altsep or os.sep, os.sep).split(os.sep)
        if os.path.isabs(name) or '..' in parts or os.path.normpath(name) == '.' or not name.strip():
            raise ConfigError(f'--run_name={name!r}: must be a plain name inside out_dir')
        return os.path.join(config['out_dir'], name)
    parts = stems + [f'{k}={v}' for k, v in config.items() if k not in NOT_IN_NAME and v != base[k]]
    return os.path.join(config['out_dir'], ','.join(parts + [f'seed={config["seed"]}']))


def shell_command(script, args):
    """`python script args...` as one would type it, quoted for the shell."""
    return ' '.join(shlex.quote(a) for a in ['python', script, *args])


def command_line(script, argv):
    """The command that continues a run, quoted for the shell, with one --init_from=resume (and no
    --overwrite, which a resumed run ignores but which reads as a threat to the run it continues)."""
    args = [a for a in argv if not a.startswith(('--init_from=', '--overwrite='))]
    return shell_command(script, args + ['--init_from=resume'])


def find_runs(patterns, need):
    """Run directories named or matched by the patterns that hold the file `need` (or one of the files in a
    tuple of names), in order, no repeats."""
    need = (need,) if isinstance(need, str) else need
    runs = []
    for pattern in patterns:
        matches = [p for p in sorted(glob.glob(pattern)) if os.path.isdir(p)]
        found = [p for p in matches if any(os.path.isfile(os.path.join(p, n)) for n in need)]
        if not found:
            raise ConfigError(f'{pattern}: no run directory with a {" or ".join(need)} there')
        for p in matches:
            if p not in found:
                print(f'skipping {p}: no {" or ".join(need)}')
        runs += [os.path.normpath(p) for p in found if os.path.normpath(p) not in runs]
    return runs


def group_runs(configs, names=None):
    """Runs whose configs differ only by seed (or by where and how they ran) form one variant.
    Returns [(label, [indices into configs])]; labels name the config keys that differ between variants."""
    groups = {}
    for i, c in enumerate(configs):
        key = json.dumps({k: v for k, v in sorted(c.items()) if k not in NOT_IN_NAME})
        groups.setdefault(key, []).append(i)
    firsts = [configs[idx[0]] for idx in groups.values()]
    keys = list(dict.fromkeys(k for c in configs for k in c if k not in NOT_IN_NAME))
    differ = [k for k in keys if len({json.dumps(c.get(k)) for c in firsts}) > 1]
    labels = [', '.join(f'{k}={c.get(k)}' for k in differ) for c in firsts]
    if len(labels) == 1:  # one variant: name it after its run directory, less the seed
        name = os.path.basename(names[0]) if names else ''
        labels = [re.sub(r',?seed=\d+$', '', name) or 'model']
    return list(zip(labels, groups.values()))


def split_list(text):
    """'a;b' or 'a,b' -> ['a', 'b']: at ';' where the text holds one (variant names hold ',')."""
    return [s.strip() for s in text.split(';' if ';' in text else ',') if s.strip()]


def rename_variants(groups, labels):
    """group_runs' [(label, idx)] with the renames of a --labels text (old=new, split at ; or ,).
    An old name that is no variant's is a ConfigError listing the variants."""
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


# -----------------------------------------------------------------------------
# a run directory: written whole, owned by one process at a time

def write_file(path, write):
    """write(f) into path through a temporary file and a rename: a reader never sees half a file."""
    try:
        with open(path + '.tmp', 'w', newline='') as f:
            write(f)
        os.replace(path + '.tmp', path)
    except OSError as err:
        if os.path.exists(path + '.tmp'):
            os.remove(path + '.tmp')
        raise ConfigError(f'cannot write {path}: {err}') from None


def take_lock(directory):
    """One process per run directory: a lock file holding its PID, made whole in one step (a link to
    a file already written), so that a process starting at the same moment never reads it empty. The
    lock of a process that is gone (SIGKILL, a crash of the machine) is taken over; so is one holding
    our own PID, which can only be a dead process's whose PID came round again."""
    path, mine = os.path.join(directory, 'lock'), os.path.join(directory, f'lock.{os.getpid()}')
    with open(mine, 'w') as f:
        f.write(str(os.getpid()))
    try:
        for _ in range(3):
            try:
                make_lock(mine, path)
                # on every exit but SIGKILL, whose lock the next owner takes over
                atexit.register(release_lock, path)
                return
            except FileExistsError:
                owner = read_lock(path)
            if owner is not None and owner != os.getpid() and process_alive(owner):
                raise ConfigError(f'{directory} is in use by process {owner} '
                                  f'(if it is not, remove {path})')
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # its owner is gone
        raise ConfigError(f'cannot lock {directory}: {path} keeps coming back')
    finally:
        os.remove(mine)


def make_lock(mine, path):
    """path, holding our PID, or FileExistsError: a hard link to the file `mine`, already written;
    where the filesystem has no hard links, created empty and then written (as most locks are)."""
    try:
        os.link(mine, path)
    except FileExistsError:
        raise
    except OSError:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)


def read_lock(path):
    """The PID in a lock file, or None if it is gone or holds no number."""
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None  # kill(0 or less) would signal a whole group: never a PID here


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's process
    return True


def release_lock(path):
    """Remove the lock if it is still ours (never one another process has taken over since)."""
    if read_lock(path) == os.getpid():
        with contextlib.suppress(OSError):
            os.remove(path)


def check_writable(directory):
    """A ConfigError unless the run directory is one, or can be made: its nearest existing ancestor
    must be a directory this process may write in. Checked before any work, so that a mistyped
    --out_dir ends in one line, not in a traceback after the model is built."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError(f'{directory} exists and is not a directory')
    parent = os.path.abspath(directory)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f'cannot make {directory}: {parent} is a file, not a directory')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f'cannot make or write {directory}: no permission to write in {parent}')
