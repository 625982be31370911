"""Regenerates python_repr_cases.json, the Python side of tests/protocol/repr_test.ts.

Run with the Python that has Celery 5.2 installed (Debian: /usr/bin/python3):
    /usr/bin/python3 tests/protocol/python_repr_cases.py tests/protocol/python_repr_cases.json
    deno fmt tests/protocol/python_repr_cases.json
"""
import json, random, sys
from celery.utils.saferepr import saferepr
import celery, platform
args_cases = [
  [2], [2, 3], [], ["it's"], ["a\nb\\"], ['say "hi"'], ["both ' and \""], [[[[1]]]], [{"a": [[[1]]]}],
  [1.5, 1e21, 1e-7, 0.1+0.2, -0.25, 123456.789, 1e22, 2**70, None, True, False],
  [{"name": "Zo\u00eb \u2603", "e": "\U0001F600"}],
  ["x"*2000], ["word "*300], [list(range(400))], ["a"*1017], ["a"*1018], ["a"*1019], ["a"*1020],
  [{"k"*10: "v"*2000, "z": 1}], [[list(range(300)), {"a": 1}]], [["\U0001F600"*1100]],
  [list(range(250)), [1, 2]], [{"a": "b"*1000}, "after"],
]
kwargs_cases = [
  {}, {"y": 3}, {"it's": "it's"}, {"nested": {"a": {"b": {"c": 1}}}},
  {"name": "Zo\u00eb \u2603", "n": 1, "f": 1.5, "big": 2**53+1, "none": None, "list": [1, "a", None, True], "nested": {"k": [1.25]}},
  {"long": "z"*1500}, {("k%d" % i): i for i in range(200)},
]
repr_cases = ["it's", "both ' and \"", 'say "hi"', "a\nb\\\r\t", "\x00\x07\x1f\x7f\x80\x9f\xa0\xad\u2028\u2029\ufeff\U0001F600\U000E0001 \u00e9\u2603",
  "\ud800", [1.5, 1e-05, 5e-324, 1.7976931348623157e308, 0.1, 1e-4, 9.999e-5, 1.2345e15 + 0.5, 1e21, 1e22],
  {"k": [None, True, False, {"x": "y"}]}, 2**64, -(2**63)]
random.seed(11)
ALPH = list("ab xyz'\"\\\n\t") + ["\u00e9","\u2603","\U0001F600","\x00","\x7f","\x85","\xa0","\xad","\u2028","\ufeff"," "]
def rstr():
    n = random.choice([0, 1, 3, 8, 20, 20, 1100 if random.random() < 0.15 else 5])
    return "".join(random.choice(ALPH) for _ in range(n))
def rnum():
    return random.choice([0, 7, -5, 2**53+1, -(2**60), 10**30, 1.5, -0.25, 0.1+0.2, 1e-7, 1e21, 123456.789, 3.14e-5])
def rval(d):
    r = random.random()
    if d > 4 or r < 0.5:
        return random.choice([None, True, False, rnum(), rnum(), rstr(), rstr()])
    n = random.choice([0, 1, 2, 3, 3, 30 if d < 2 else 3])
    if r < 0.75: return [rval(d+1) for _ in range(n)]
    return {(rstr()[:12] or "k"): rval(d+1) for _ in range(n)}
rows = []
for a in args_cases: rows.append({"kind": "args", "json": json.dumps(a), "python": saferepr(tuple(a), 1024)})
for k in kwargs_cases: rows.append({"kind": "kwargs", "json": json.dumps(k), "python": saferepr(k, 1024)})
for v, n in [([1, 2, 3], 4), ("hello world", 5), ({"a": [1, 2, 3]}, 8), ([["abc", "def"], "ghi"], 7), (list(range(10)), 10)]:
    rows.append({"kind": "saferepr", "maxlen": n, "json": json.dumps(v), "python": saferepr(v, n)})
for v in repr_cases: rows.append({"kind": "repr", "json": json.dumps(v), "python": repr(v)})
for i in range(250):
    a = [rval(1) for _ in range(random.randint(0, 3))]
    k = {(rstr()[:12] or "k"): rval(1) for _ in range(random.randint(0, 3))}
    v = rval(0)
    if len(json.dumps(a)) + len(json.dumps(k)) + len(json.dumps(v)) > 3000: continue
    rows.append({"kind": "args", "json": json.dumps(a), "python": saferepr(tuple(a), 1024)})
    rows.append({"kind": "kwargs", "json": json.dumps(k), "python": saferepr(k, 1024)})
    rows.append({"kind": "saferepr", "maxlen": 60, "json": json.dumps(v), "python": saferepr(v, 60)})
    rows.append({"kind": "repr", "json": json.dumps(v), "python": repr(v)})
out = {"about": "Python outputs for tests/protocol/repr_test.ts: kind args = celery.utils.saferepr.saferepr(tuple(value), 1024) (the argsrepr header), kwargs = saferepr(value, 1024) (kwargsrepr), saferepr = saferepr(value, maxlen), repr = builtin repr(value); value = json.loads(json). No value holds an integral float (JSON 1.0 reads back as the JS number 1, an int for Python).",
  "produced_by": "Python %s, celery %s" % (platform.python_version(), celery.__version__), "cases": rows}
json.dump(out, open(sys.argv[1], "w"), indent=2, ensure_ascii=False)
