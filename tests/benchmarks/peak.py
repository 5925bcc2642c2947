"""Peak memory of the running process, for the benchmarks' fresh interpreters.

``VmHWM`` from ``/proc/self/status``, not ``ru_maxrss``: a child started with
``vfork`` + ``exec`` from a big process (pytest) keeps its parent's high-water
mark in ``ru_maxrss``; ``VmHWM`` is the new process's own.  The child scripts
run with the project root as their directory and import this module.
"""

import textwrap

#: ``python -c MEASURED_COMMAND ARGS`` (run with the project root as its directory) runs
#: ``crit-plus ARGS`` in a fresh interpreter, then prints ``VmHWM <KiB>`` on stderr and
#: exits with the command's code.
MEASURED_COMMAND = textwrap.dedent("""
    import sys
    from crit_plus.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as done:
        code = done.code
    from tests.benchmarks.peak import peak_kib
    print(f"VmHWM {peak_kib()}", file=sys.stderr)
    sys.exit(code)
""")


def peak_kib():
    """The process's peak resident memory so far, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")
