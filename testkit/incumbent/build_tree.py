"""Run in .venv-incumbent: waldur-site-agent 1.0.7's own code makes SLURM accounts, as its order processor would.

Reads JSON on stdin: {"backend_settings": {...}, "backend_components": {...}, "resources": [{"uuid", "name",
"slug", "customer_slug", "customer_name", "project_slug", "project_name", "limits", "users",
"account_name_generation_policy"}]}; prints {resource uuid: backend_id} as JSON.

Naming and creation are the incumbent's: ``OfferingOrderProcessor._create_resource_with_uniqueness_check`` (its
retry loop and both naming options) calls ``SlurmBackend.create_resource_with_id`` (customer and project
accounts, the allocation, its limits); users go in with ``SlurmBackend.add_user`` (its DefaultAccount policy).
Only Waldur is left out: the processor method runs with a stand-in ``self`` holding the offering's settings and
the backend, and a uniqueness check that passes, as with ``check_backend_id_uniqueness`` off (its default).
"""
import json
import sys
import types

from waldur_api_client.models.resource import Resource
from waldur_site_agent.common.processors import OfferingOrderProcessor
from waldur_site_agent_slurm.backend import SlurmBackend


def names(backend, rows) -> dict:
    """Mode "names" (benchmarks): {uuid: [customer, project, allocation]} from its own naming methods, for a tree
    too big to make through its one-command-per-account path (12.7 sacctmgr processes an allocation)."""
    return {row["uuid"]: [backend._get_customer_backend_id(row["customer_slug"]),
                          backend._get_project_backend_id(row["project_slug"]),
                          backend._get_resource_backend_id(row["slug"])] for row in rows}


def main() -> None:
    spec = json.load(sys.stdin)
    backend = SlurmBackend(spec["backend_settings"], spec["backend_components"])
    if spec.get("mode") == "names":
        print(json.dumps(names(backend, spec["resources"])))
        return
    processor = types.SimpleNamespace(offering=types.SimpleNamespace(backend_settings=spec["backend_settings"]),
                                      resource_backend=backend, _check_backend_id_uniqueness=lambda _id: True)
    made = {}
    for row in spec["resources"]:
        options = {}
        if row.get("account_name_generation_policy"):
            options["account_name_generation_policy"] = row["account_name_generation_policy"]
        resource = Resource.from_dict({
            "uuid": row["uuid"], "name": row["name"], "slug": row["slug"], "customer_slug": row["customer_slug"],
            "customer_name": row["customer_name"], "project_slug": row["project_slug"],
            "project_name": row["project_name"], "limits": row.get("limits") or {},
            "offering_plugin_options": options})
        info = OfferingOrderProcessor._create_resource_with_uniqueness_check(processor, resource, {})
        resource.backend_id = info.backend_id
        for user in row.get("users") or ():
            backend.add_user(resource, user)
        made[row["uuid"]] = info.backend_id
    print(json.dumps(made))


if __name__ == "__main__":
    main()
