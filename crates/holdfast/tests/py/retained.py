"""[MQTT-3.3.1-5] [MQTT-3.3.1-8] [MQTT-3.3.1-9] [MQTT-3.3.1-10] (v5: [MQTT-3.3.1-5..7]):
retained messages are stored, replaced, delivered with RETAIN 1 to new subscriptions and with
RETAIN 0 on live ones, and deleted by a zero-byte retained message."""

from common import Client, check, parse_args, run

args = parse_args(__doc__)


def main():
    pub = Client(args, "paho-ret-pub").connect()
    pub.publish("paho/ret/a", b"a1", qos=1, retain=True)
    pub.publish("paho/ret/a", b"a2", qos=1, retain=True)
    pub.publish("paho/ret/b", b"b1", qos=1, retain=True)

    s = Client(args, "paho-ret-s1").connect()
    s.subscribe("paho/ret/#", qos=1)
    got = sorted((m.topic, m.payload, m.retain) for m in (s.recv(), s.recv()))
    check(got == [("paho/ret/a", b"a2", True), ("paho/ret/b", b"b1", True)], f"retained on subscribe: {got}")
    s.expect_nothing()

    pub.publish("paho/ret/a", b"a3", qos=1, retain=True)
    m = s.recv()
    check((m.payload, m.retain) == (b"a3", False), f"live delivery: {m.payload!r} retain={m.retain}")

    pub.publish("paho/ret/a", b"", qos=1, retain=True)
    m = s.recv()
    check(m.payload == b"", "the deleting message is delivered as a normal message")
    s.disconnect()

    s = Client(args, "paho-ret-s2").connect()
    s.subscribe("paho/ret/#", qos=1)
    m = s.recv()
    check((m.topic, m.payload, m.retain) == ("paho/ret/b", b"b1", True), f"only b remains: {m.topic} {m.payload!r}")
    s.expect_nothing()
    s.disconnect()
    pub.disconnect()


run(main)
