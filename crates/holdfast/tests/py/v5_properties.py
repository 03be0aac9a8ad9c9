"""MQTT 5 [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18]
[MQTT-3.3.2-20]: PUBLISH properties reach the subscriber unaltered, so request/response works;
[MQTT-3.2.2-16] an empty client id gets an Assigned Client Identifier."""

from common import Client, PacketTypes, Properties, check, parse_args, run

args = parse_args(__doc__, protocols=("5",))


def main():
    anon = Client(args, "").connect()
    assigned = getattr(anon.connack[2], "AssignedClientIdentifier", None)
    check(assigned, f"[MQTT-3.2.2-16] no Assigned Client Identifier in {anon.connack[2]}")
    anon.disconnect()

    responder = Client(args, "paho-responder").connect()
    responder.subscribe("paho/req", qos=1)
    requester = Client(args, "paho-requester").connect()
    requester.subscribe("paho/resp/requester", qos=1)

    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "paho/resp/requester"
    props.CorrelationData = b"\x00\x01corr\xff"
    props.UserProperty = [("k", "1"), ("ä", "ü"), ("k", "2")]
    props.ContentType = "text/plain; charset=utf-8"
    props.PayloadFormatIndicator = 1
    requester.publish("paho/req", "ping".encode(), qos=1, props=props)

    req = responder.recv()
    p = req.properties
    check(p.ResponseTopic == "paho/resp/requester", f"[MQTT-3.3.2-15] response topic {p.ResponseTopic!r}")
    check(p.CorrelationData == b"\x00\x01corr\xff", f"[MQTT-3.3.2-16] correlation data {p.CorrelationData!r}")
    check(p.UserProperty == [("k", "1"), ("ä", "ü"), ("k", "2")], f"[MQTT-3.3.2-17/18] user properties {p.UserProperty}")
    check(p.ContentType == "text/plain; charset=utf-8", f"[MQTT-3.3.2-20] content type {p.ContentType!r}")
    check(p.PayloadFormatIndicator == 1, "[MQTT-3.3.2-4] payload format indicator")

    reply = Properties(PacketTypes.PUBLISH)
    reply.CorrelationData = p.CorrelationData
    responder.publish(p.ResponseTopic, b"pong", qos=1, props=reply)
    resp = requester.recv()
    check(resp.payload == b"pong", f"reply payload {resp.payload!r}")
    check(resp.properties.CorrelationData == b"\x00\x01corr\xff", "correlation data on the reply")
    for c in (responder, requester):
        c.disconnect()


run(main)
