"""Development tooling shared by tests, tools and benchmarks (installed with the project).

A real control plane (:mod:`.controlplane`), the simulator and webhook as processes
(:mod:`.stack`), certificates (:mod:`.certs`), object builders (:mod:`.builders`), the one
AdmissionReview builder (:mod:`.reviews`), the load generator (:mod:`.loadgen`), hostile
inputs (:mod:`.hostile`) and the fault matrix (:mod:`.faultmatrix`). Nothing in
``webhook/`` imports this package.
"""
