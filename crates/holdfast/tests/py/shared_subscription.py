"""MQTT 5 section 4.8.2 [MQTT-4.8.2-1] [MQTT-4.8.2-2]: each message published to a shared
subscription's topic goes to exactly one member of the group."""

from common import Client, QUIET, check, parse_args, run

args = parse_args(__doc__, protocols=("5",))
N = 20


def main():
    members = [Client(args, f"paho-sh-{i}").connect() for i in range(2)]
    for m in members:
        m.subscribe("$share/grp/paho/sh/t", qos=1)
    pub = Client(args, "paho-sh-pub").connect()
    for i in range(N):
        pub.publish("paho/sh/t", str(i).encode(), qos=1)
    got = []
    for m in members:
        mine = []
        while True:
            try:
                mine.append(int(m.recv(timeout=QUIET * 2).payload))
            except Exception:
                break
        got.append(mine)
    check(sorted(got[0] + got[1]) == list(range(N)), f"each message exactly once: {got}")
    check(all(got), f"both members get messages: {got}")
    for c in members + [pub]:
        c.disconnect()


run(main)
