"""[MQTT-3.1.2-8]: the Will Message is published when the connection ends without DISCONNECT;
[MQTT-3.1.2-10] (v5: [MQTT-3.14.4-3]): it is discarded on a normal DISCONNECT;
v5 DISCONNECT reason 0x04 asks for it to be published."""

from common import Client, PacketTypes, ReasonCode, check, parse_args, run

args = parse_args(__doc__)


def with_will(client_id):
    return Client(args, client_id, will=(f"paho/will/{client_id}", client_id.encode(), 1, False, None))


def main():
    watch = Client(args, "paho-will-watch").connect()
    watch.subscribe("paho/will/+", qos=1)

    normal = with_will("normal").connect()
    normal.disconnect()
    killed = with_will("killed").connect()
    killed.kill()
    m = watch.recv()
    check((m.topic, m.payload) == ("paho/will/killed", b"killed"), f"will of killed client: {m.topic} {m.payload!r}")
    check(m.qos == 1, f"will QoS {m.qos}")

    if args.protocol == "5":
        asked = with_will("asked").connect()
        asked.disconnect(ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
        m = watch.recv()
        check(m.topic == "paho/will/asked", f"will after DISCONNECT 0x04: {m.topic}")

    watch.expect_nothing()  # never the will of the normally disconnected client
    watch.disconnect()


run(main)
