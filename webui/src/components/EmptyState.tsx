import type { LucideIcon } from 'lucide-react';
import type { ReactNode } from 'react';

interface EmptyStateProps {
  icon?: LucideIcon;
  /** Tailwind text colour for the icon, e.g. "text-blue-400". */
  iconClassName?: string;
  title: ReactNode;
  description?: ReactNode;
  action?: ReactNode;
  compact?: boolean;
}

/** What a list or tab shows when it has nothing yet: centred, grey, generous vertical padding. */
export function EmptyState({ icon: Icon, iconClassName = 'text-slate-500', title, description, action,
                             compact = false }: EmptyStateProps) {
  return (
    <div className={`text-center ${compact ? 'py-8 text-slate-500' : 'py-12 text-slate-400'}`} data-testid="empty-state">
      {Icon && <Icon className={`w-12 h-12 mx-auto mb-4 ${iconClassName}`} aria-hidden="true" strokeWidth={1.5} />}
      <p className={compact ? '' : 'text-slate-300 font-medium'}>{title}</p>
      {description && <p className="mt-2 text-sm text-slate-400">{description}</p>}
      {action && <div className="mt-6 flex justify-center">{action}</div>}
    </div>
  );
}
