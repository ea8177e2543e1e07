"""Labs: network topologies in one file (containerlab's ``*.clab.yml``), deployed as
engine containers joined by veth pairs, checked with real traffic.

    topology.py  the file: YAML (PyYAML, loaded lazily) -> frozen dataclasses, every
                 problem one error naming the line
    plan.py      pure: container names, per-node run options, link and address lines
    records.py   what a deployed lab made, as a file per lab (written before the kernel work)
    manager.py   deploy / destroy / inspect / exec / gc on the engine
    checks.py    reachable / unreachable checks over the topology's own interfaces
    graph.py     dot and mermaid pictures of a topology, without deploying it

See ``docs/lab.md`` for the format, the ``tsubo:`` extension key and the decisions.
"""
