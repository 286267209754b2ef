import { X } from 'lucide-react';
import { useEffect, useId, useLayoutEffect, useRef } from 'react';
import type { ReactNode } from 'react';
import { createPortal } from 'react-dom';

const WIDTHS = {
  md: 'max-w-md',
  lg: 'max-w-lg',
  '3xl': 'max-w-3xl',
  '4xl': 'max-w-4xl',
  '6xl': 'max-w-6xl',
} as const;

interface ModalProps {
  title: ReactNode;
  subtitle?: ReactNode;
  onClose?: () => void;
  children?: ReactNode;
  footer?: ReactNode;
  /** Sub-tab strip or other content between the header and the scrolling body. */
  tabs?: ReactNode;
  size?: keyof typeof WIDTHS;
  /** The model modals blur the backdrop and cap the height at 80 %; the others use 90 %. */
  blur?: boolean;
  maxHeight?: '80vh' | '90vh';
  /** false: no X, no Escape, no overlay click (e.g. the token prompt). */
  dismissible?: boolean;
  titleClassName?: string;
  testId?: string;
  /** The body scrolls back to its top when this changes (e.g. the active sub-tab): a scroll position belongs to one view. */
  scrollKey?: string;
}

/**
 * A dialog over the WHOLE viewport (rendered into <body>, `fixed inset-0`, so no parent's overflow or
 * transform can clip or shift it). Closes on the X, on Escape and on an overlay click; takes focus; aria-modal.
 */
export function Modal({ title, subtitle, onClose, children, footer, tabs, size = '6xl', blur = false,
                        maxHeight = '90vh', dismissible = true, titleClassName = 'text-2xl font-bold',
                        testId, scrollKey }: ModalProps) {
  const dialog = useRef<HTMLDivElement>(null);
  const body = useRef<HTMLDivElement>(null);
  const titleId = useId();
  const closeRef = useRef(onClose);
  closeRef.current = onClose;

  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    const node = dialog.current;
    if (node && !node.contains(document.activeElement)) node.focus();
    const { overflow } = document.body.style;
    document.body.style.overflow = 'hidden';
    return () => {
      document.body.style.overflow = overflow;
      if (previous && typeof previous.focus === 'function' && document.contains(previous)) previous.focus();
    };
  }, []);

  useLayoutEffect(() => {
    if (body.current) body.current.scrollTop = 0;
  }, [scrollKey]);

  useEffect(() => {
    if (!dismissible) return undefined;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.stopPropagation();
        closeRef.current?.();
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [dismissible]);

  return createPortal(
    <div className={`fixed inset-0 z-50 flex items-center justify-center p-4 bg-black/50 ${blur ? 'backdrop-blur-sm' : ''}`}
         onMouseDown={(e) => {
           if (dismissible && e.target === e.currentTarget) closeRef.current?.();
         }}>
      <div ref={dialog} role="dialog" aria-modal="true" aria-labelledby={titleId} tabIndex={-1} data-testid={testId}
           className={`w-full ${WIDTHS[size]} ${maxHeight === '80vh' ? 'max-h-[80vh]' : 'max-h-[90vh]'} bg-slate-900 border border-slate-800 rounded-lg shadow-2xl flex flex-col overflow-hidden focus:outline-none text-slate-100`}>
        <div className="flex items-start justify-between gap-4 p-6 border-b border-slate-800">
          <div className="min-w-0 flex-1">
            <h2 id={titleId} className={titleClassName}>{title}</h2>
            {subtitle && <div className="mt-1 text-slate-400">{subtitle}</div>}
          </div>
          {dismissible && (
            <button type="button" onClick={() => closeRef.current?.()} aria-label="Close"
                    className="text-slate-400 hover:text-slate-200 transition-colors">
              <X className="w-6 h-6" />
            </button>
          )}
        </div>
        {tabs}
        <div ref={body} className="flex-1 overflow-y-auto p-6">{children}</div>
        {footer && <div className="p-6 border-t border-slate-800">{footer}</div>}
      </div>
    </div>,
    document.body,
  );
}

/** The in-modal tab strip (emerald underline when active). */
export function ModalTabs<T extends string>({ tabs, active, onChange }: {
  tabs: readonly T[]; active: T; onChange: (tab: T) => void;
}) {
  return (
    <div className="flex px-6 border-b border-slate-800" role="tablist">
      {tabs.map((tab) => (
        <button key={tab} type="button" role="tab" aria-selected={tab === active} onClick={() => onChange(tab)}
                className={`px-4 py-3 border-b-2 capitalize transition-colors ${tab === active
                  ? 'border-emerald-400 text-emerald-400' : 'border-transparent text-slate-400 hover:text-slate-300'}`}>
          {tab.replace(/-/g, ' ')}
        </button>
      ))}
    </div>
  );
}
