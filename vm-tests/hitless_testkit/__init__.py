"""Test code of hitless: a systemd container driver with the NixOS test
driver's Machine API, the upgrade scenarios both drivers run, and the
entry points of the container tests, the RPM tests and the benchmark.

Standard library only: the NixOS test driver imports this package too
(through extraPythonPackages), and nothing is installed on the hosts that
run the container tests.

Entry points (run as modules, normally through their shell wrappers):

    python3 -m hitless_testkit.containers   vm-tests/run-container-tests
    python3 -m hitless_testkit.rpm          rpm/test
    python3 -m hitless_testkit.bench        bench/run

Exit status of every entry point (errors.py): 0 all passed, 1 something
failed, 2 bad usage, 3 cannot run here (not root, a tool or input missing;
one line says which), 128+N interrupted by signal N.
"""
