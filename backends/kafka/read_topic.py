#!/usr/bin/env python3
"""An outside reader of the order topic, for the end-to-end test.

Reads every partition of TOPIC from the beginning up to the high watermarks
taken at start, with the confluent-kafka client (a different Kafka client
from the crate's rdkafka, so the test proves the topic is readable by
others). Prints one line per message: `<key> <event_type header>`.

    read_topic.py BROKERS TOPIC
"""
import sys

from confluent_kafka import Consumer, TopicPartition


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    brokers, topic = sys.argv[1], sys.argv[2]
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "flashsale-e2e-outside-reader",
        "enable.auto.commit": False,
    })
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions)
    if not partitions:
        print(f"topic {topic} has no partitions", file=sys.stderr)
        return 1
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])  # 0: from the start
    done = {p: False for p in ends}
    read = 0
    idle = 0
    while not all(done.values()):
        msg = consumer.poll(1.0)
        if msg is None:
            idle += 1
            if idle > 30:
                print(f"stalled after {read} messages", file=sys.stderr)
                return 1
            continue
        idle = 0
        if msg.error():
            print(f"error: {msg.error()}", file=sys.stderr)
            return 1
        headers = dict(msg.headers() or [])
        event_type = headers.get("event_type", b"?").decode()
        print(f"{msg.key().decode()} {event_type}")
        read += 1
        if msg.offset() + 1 >= ends[msg.partition()]:
            done[msg.partition()] = True
    consumer.close()
    print(f"read {read} messages from {len(ends)} partitions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
