import { useCallback, useLayoutEffect, useRef, useState } from 'react';
import type { ReactNode } from 'react';
import { createPortal } from 'react-dom';

const GAP = 6;
const MARGIN = 8;

/** Hover/focus state of an element that shows a tooltip: spread `handlers` on it, pass `anchor` to TooltipCard. */
export function useTooltipAnchor() {
  const [anchor, setAnchor] = useState<DOMRect | null>(null);
  const show = useCallback((e: { currentTarget: Element }) => setAnchor(e.currentTarget.getBoundingClientRect()), []);
  const hide = useCallback(() => setAnchor(null), []);
  return { anchor, handlers: { onMouseEnter: show, onMouseLeave: hide, onFocus: show, onBlur: hide } };
}

/**
 * A dark card above its anchor (below when there is no room above), kept inside the viewport. Rendered
 * into <body> with fixed positioning, so a scrolling modal body cannot clip it.
 */
export function TooltipCard({ anchor, children, testId = 'tooltip' }: {
  anchor: DOMRect | null; children: ReactNode; testId?: string;
}) {
  const card = useRef<HTMLDivElement>(null);
  const [place, setPlace] = useState<{ left: number; top: number } | null>(null);
  useLayoutEffect(() => {
    if (!anchor || !card.current) {
      setPlace(null);
      return;
    }
    const { width, height } = card.current.getBoundingClientRect();
    const above = anchor.top - GAP - height;
    const top = above >= MARGIN ? above : anchor.bottom + GAP;
    const centred = anchor.left + anchor.width / 2 - width / 2;
    const left = Math.min(Math.max(centred, MARGIN), window.innerWidth - width - MARGIN);
    setPlace({ left, top });
  }, [anchor]);
  if (!anchor) return null;
  return createPortal(
    <div ref={card} role="tooltip" data-testid={testId}
         style={{ left: place?.left ?? anchor.left, top: place?.top ?? anchor.top, visibility: place ? 'visible' : 'hidden' }}
         className="fixed z-[70] pointer-events-none max-w-xs px-3 py-2 rounded-lg bg-slate-950 border border-slate-700 shadow-xl text-xs text-slate-300">
      {children}
    </div>,
    document.body,
  );
}
