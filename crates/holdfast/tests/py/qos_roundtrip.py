"""[MQTT-3.3.5-1] / [MQTT-3.8.4-6] (v5: [MQTT-3.8.4-8]): messages published at QoS 0, 1 and 2
arrive with topic and payload intact at min(published QoS, granted QoS)."""

from common import Client, check, parse_args, run

args = parse_args(__doc__)


def main():
    sub2 = Client(args, "paho-rt-sub2").connect()
    sub1 = Client(args, "paho-rt-sub1").connect()
    check(sub2.subscribe("paho/rt/ü", qos=2) == 2, "granted QoS 2")
    check(sub1.subscribe("paho/rt/ü", qos=1) == 1, "granted QoS 1")
    pub = Client(args, "paho-rt-pub").connect()
    for qos in (0, 1, 2):
        payload = bytes(range(256)) + bytes([qos])
        pub.publish("paho/rt/ü", payload, qos=qos)
        for sub, granted in ((sub2, 2), (sub1, 1)):
            m = sub.recv()
            check(m.topic == "paho/rt/ü", f"topic {m.topic!r}")
            check(m.payload == payload, f"payload at QoS {qos} altered")
            check(m.qos == min(qos, granted), f"published {qos}, granted {granted}: got QoS {m.qos}")
            check(not m.retain, "RETAIN must be 0 on a live subscription")
    for c in (sub1, sub2, pub):
        c.disconnect()


run(main)
