import type { ReactNode } from 'react';

interface CardProps {
  title?: ReactNode;
  actions?: ReactNode;
  className?: string;
  children?: ReactNode;
  testId?: string;
}

/** The panel style every tab shares: slate-900/50, 1 px slate-800 border, rounded-lg, 24 px padding. */
export function Card({ title, actions, className = '', children, testId }: CardProps) {
  return (
    <section className={`bg-slate-900/50 border border-slate-800 rounded-lg p-6 ${className}`} data-testid={testId}>
      {(title || actions) && (
        <div className="flex items-center justify-between mb-4 gap-4">
          {title && <h3 className="text-lg font-semibold">{title}</h3>}
          {actions}
        </div>
      )}
      {children}
    </section>
  );
}

export function PageTitle({ children }: { children: ReactNode }) {
  return <h2 className="text-2xl font-semibold">{children}</h2>;
}
