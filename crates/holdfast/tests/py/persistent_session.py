"""[MQTT-3.1.2-4] [MQTT-3.2.2-2] (v5: [MQTT-3.1.2-5] [MQTT-3.1.2-23] [MQTT-3.2.2-3]):
a persistent session keeps its subscription while offline, receives the QoS 1 and 2 messages
published meanwhile, in order, and the CONNACK says Session Present 1."""

from common import Client, check, parse_args, run

args = parse_args(__doc__)


def persistent():
    return Client(args, "paho-ps", clean=False, session_expiry=60)


def main():
    sub = persistent().connect()
    check(not sub.session_present, "a new session must have Session Present 0")
    sub.subscribe("paho/ps/t", qos=2)
    sub.disconnect()

    pub = Client(args, "paho-ps-pub").connect()
    pub.publish("paho/ps/t", b"first", qos=1)
    pub.publish("paho/ps/t", b"second", qos=2)
    pub.publish("paho/ps/t", b"third", qos=1)

    sub = persistent().connect()
    check(sub.session_present, "resumed session must have Session Present 1")
    got = [(m.payload, m.qos) for m in (sub.recv(), sub.recv(), sub.recv())]
    # [MQTT-4.6.0-6] orders messages of the same topic and QoS; paho hands a QoS 2 message to
    # the application only after PUBREL, so order across QoS levels is not observable here.
    check([g for g in got if g[1] == 1] == [(b"first", 1), (b"third", 1)], f"QoS 1 messages: {got}")
    check([g for g in got if g[1] == 2] == [(b"second", 2)], f"QoS 2 message: {got}")
    sub.expect_nothing()

    # A clean start discards the session.
    sub.disconnect()
    clean = Client(args, "paho-ps", clean=True, session_expiry=0).connect()
    check(not clean.session_present, "clean start must have Session Present 0")
    clean.disconnect()
    pub.publish("paho/ps/t", b"nobody", qos=1)
    sub = persistent().connect()
    check(not sub.session_present, "session must be gone after a clean start")
    sub.expect_nothing()
    sub.disconnect()
    pub.disconnect()


run(main)
