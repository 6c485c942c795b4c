"""Print a YAML file as JSON (e.g. a Tahoe node's introducer announcement cache).

usage: python yaml_to_json.py FILE
"""
import json
import sys

import yaml


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: %s FILE" % argv[0])
    with open(argv[1]) as f:
        json.dump(yaml.safe_load(f), sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
