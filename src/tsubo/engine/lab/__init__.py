"""Labs: network topologies in one file (containerlab's ``*.clab.yml``), deployed as
engine containers joined by veth pairs, checked with real traffic.

    topology.py  the file: YAML (PyYAML, loaded lazily) -> frozen dataclasses, every
                 problem one error naming the line
    plan.py      pure: the wiring (which ip lines run in which namespace), and --explain
    records.py   what a deployed lab made, as a file per lab (written before the kernel
                 work), and the per-lab lock
    manager.py   deploy / apply / destroy / inspect / exec / validate / gc on the engine
    checks.py    reachable / unreachable checks over the topology's own interfaces
    graph.py     dot, mermaid, svg and text pictures of a topology, without deploying it
    capture.py   tcpdump on a node's interface, in its namespace

See ``docs/lab.md`` for the format, the ``tsubo:`` extension key and the decisions.
"""
