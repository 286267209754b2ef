// Where two generations part: a longest-common-subsequence diff over their tokens.

export interface Segment {
  text: string;
  /** 'same' on both sides; 'removed' only in the baseline; 'added' only in the steered text. */
  kind: 'same' | 'removed' | 'added';
}

export interface TokenDiff {
  baseline: Segment[];
  steered: Segment[];
  /** One stream: common text, then what the baseline had, then what steering wrote instead. */
  unified: Segment[];
  /** Tokens marked changed on each side. */
  changed: { baseline: number; steered: number };
}

type Op = { kind: Segment['kind']; a: number; b: number };

/** Token-level LCS (ids compare tokens; pieces are what is shown). Trims the common prefix and
 * suffix first, so the quadratic table only spans the part that differs. */
export function diffTokens(baseIds: number[], basePieces: string[], steerIds: number[], steerPieces: string[]): TokenDiff {
  const n = baseIds.length;
  const m = steerIds.length;
  let start = 0;
  while (start < n && start < m && baseIds[start] === steerIds[start]) start += 1;
  let endA = n;
  let endB = m;
  while (endA > start && endB > start && baseIds[endA - 1] === steerIds[endB - 1]) {
    endA -= 1;
    endB -= 1;
  }
  const ops: Op[] = [];
  for (let i = 0; i < start; i += 1) ops.push({ kind: 'same', a: i, b: i });
  const rows = endA - start;
  const cols = endB - start;
  // lcs[i][j] = LCS length of a[start+i..endA) and b[start+j..endB)
  const width = cols + 1;
  const lcs = new Uint32Array((rows + 1) * width);
  for (let i = rows - 1; i >= 0; i -= 1) {
    for (let j = cols - 1; j >= 0; j -= 1) {
      lcs[i * width + j] = baseIds[start + i] === steerIds[start + j]
        ? lcs[(i + 1) * width + j + 1] + 1
        : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  let i = 0;
  let j = 0;
  while (i < rows || j < cols) {
    if (i < rows && j < cols && baseIds[start + i] === steerIds[start + j]) {
      ops.push({ kind: 'same', a: start + i, b: start + j });
      i += 1;
      j += 1;
    } else if (j < cols && (i >= rows || lcs[i * width + j + 1] >= lcs[(i + 1) * width + j])) {
      ops.push({ kind: 'added', a: -1, b: start + j });
      j += 1;
    } else {
      ops.push({ kind: 'removed', a: start + i, b: -1 });
      i += 1;
    }
  }
  for (let k = 0; k < n - endA; k += 1) ops.push({ kind: 'same', a: endA + k, b: endB + k });

  const push = (list: Segment[], kind: Segment['kind'], text: string) => {
    if (!text) return;
    const last = list[list.length - 1];
    if (last && last.kind === kind) last.text += text;
    else list.push({ kind, text });
  };
  const baseline: Segment[] = [];
  const steered: Segment[] = [];
  const unified: Segment[] = [];
  let removedRun: string[] = [];
  let addedRun: string[] = [];
  const flush = () => {
    push(unified, 'removed', removedRun.join(''));
    push(unified, 'added', addedRun.join(''));
    removedRun = [];
    addedRun = [];
  };
  const changed = { baseline: 0, steered: 0 };
  for (const op of ops) {
    if (op.kind === 'same') {
      flush();
      push(baseline, 'same', basePieces[op.a] ?? '');
      push(steered, 'same', steerPieces[op.b] ?? '');
      push(unified, 'same', steerPieces[op.b] ?? '');
    } else if (op.kind === 'removed') {
      changed.baseline += 1;
      push(baseline, 'removed', basePieces[op.a] ?? '');
      removedRun.push(basePieces[op.a] ?? '');
    } else {
      changed.steered += 1;
      push(steered, 'added', steerPieces[op.b] ?? '');
      addedRun.push(steerPieces[op.b] ?? '');
    }
  }
  flush();
  return { baseline, steered, unified, changed };
}

/** Words as the backend's word overlap counts them (letters, digits, underscore). */
export function countWords(text: string): number {
  return (text.match(/\w+/g) ?? []).length;
}
