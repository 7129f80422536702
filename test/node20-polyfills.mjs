// Node 20 lacks Map.groupBy / Object.groupBy / Promise.withResolvers, which vitest 5's failure
// reporter uses; without them a failing test crashes the reporter and hides the assertion.
if (typeof Map.groupBy !== 'function') {
  Map.groupBy = (items, fn) => {
    const m = new Map();
    let i = 0;
    for (const x of items) {
      const k = fn(x, i++);
      const a = m.get(k);
      if (a) a.push(x);
      else m.set(k, [x]);
    }
    return m;
  };
}
if (typeof Object.groupBy !== 'function') {
  Object.groupBy = (items, fn) => {
    const o = Object.create(null);
    let i = 0;
    for (const x of items) (o[fn(x, i++)] ??= []).push(x);
    return o;
  };
}
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = () => {
    let resolve, reject;
    const promise = new Promise((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  };
}
