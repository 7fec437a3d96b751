"""Named seeds for the standalone emulator (``--seed demo``)."""


def seed_demo(emu) -> dict:
    """One provider offering with a customer, a project, three users (alice with a SLURM
    login, bob whose login is still empty, carol without an offering user), a running
    allocation with a team and a pending Create order."""
    customer = emu.add_customer("Demo University")
    project = emu.add_project(customer["uuid"], "Physics")
    offering = emu.add_offering("SLURM demo", components=[
        {"type": "cpu", "name": "CPU", "measured_unit": "k-Hours", "billing_type": "usage"},
        {"type": "mem", "name": "RAM", "measured_unit": "gb-Hours", "billing_type": "usage"},
        {"type": "gpu", "name": "GPU", "measured_unit": "gpu-Hours", "billing_type": "usage"},
    ])
    users = {name: emu.add_user(name, name.title(), f"{name}@example.org")
             for name in ("alice", "bob", "carol")}
    emu.add_offering_user(offering["uuid"], users["alice"]["uuid"], "alice")
    emu.add_offering_user(offering["uuid"], users["bob"]["uuid"], "")
    running = emu.add_resource(offering["uuid"], project["uuid"], "alloc0",
                               limits={"cpu": 100, "mem": 200, "gpu": 0}, backend_id="alloc0")
    for user in users.values():
        emu.add_team_member(running["uuid"], user["uuid"])
    order = emu.create_order(offering["uuid"], project["uuid"], limits={"cpu": 10, "mem": 20, "gpu": 0},
                             attributes={"name": "alloc1"})
    return {"customer_uuid": customer["uuid"], "project_uuid": project["uuid"],
            "offering_uuid": offering["uuid"], "resource_uuid": running["uuid"],
            "order_uuid": order["uuid"]}


SEEDS = {"demo": seed_demo}
