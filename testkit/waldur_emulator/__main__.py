"""Run the emulator standalone:
``python -m testkit.waldur_emulator --port 8080 --profile current --token T --seed demo``"""
import argparse
import threading

from testkit.waldur_emulator import WaldurEmulator
from testkit.waldur_emulator.seed import SEEDS


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m testkit.waldur_emulator",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--profile", default="current", choices=["current", "7.0"])
    parser.add_argument("--token", default="secret-token")
    parser.add_argument("--seed", choices=sorted(SEEDS), help="seed the state with a named data set")
    args = parser.parse_args(argv)

    emu = WaldurEmulator(token=args.token, profile=args.profile, host=args.host, port=args.port)
    emu.start()
    seeded = SEEDS[args.seed](emu) if args.seed else {}
    print(f"WALDUR_API_URL={emu.url}")
    print(f"WALDUR_API_TOKEN={emu.token}")
    print(f"PROFILE={emu.profile}")
    for key, value in seeded.items():
        print(f"{key.upper()}={value}")
    print("Ctrl-C stops.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
