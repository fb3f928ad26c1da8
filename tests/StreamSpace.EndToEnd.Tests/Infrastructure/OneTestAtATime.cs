// Every test here asserts wall-clock bounds of the product (an agent online within 2 s of its start, offline within
// 3 heartbeats + 1 s, back within 5 s of a control-plane restart) with real processes on a 2-core machine. Two such
// tests at once (xunit's default) made one's processes queue behind the other's: a full run saw a fresh agent come
// online after 2.15 s while another test started five Xvnc sessions. test.sh already runs this tier alone; its tests
// now run one after another too (about 40 s more per run).
[assembly: CollectionBehavior(DisableTestParallelization = true)]
