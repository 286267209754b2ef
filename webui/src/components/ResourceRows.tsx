import { Fragment } from 'react';
import type { ReactNode } from 'react';

/**
 * A tab's list of resources (datasets, models), with `empty` once the list has loaded and has none.
 * The API lists newest first; the rows show oldest first, so a new download appears at the bottom,
 * next to where the eye ends after starting it.
 */
export function ResourceRows<T extends { id: string }>({ items, loaded, empty, testId, row }: {
  items: T[];
  loaded: boolean;
  empty: ReactNode;
  testId: string;
  row: (item: T) => ReactNode;
}) {
  return (
    <>
      {loaded && items.length === 0 && empty}
      <div className="space-y-4" data-testid={testId}>
        {[...items].reverse().map((item) => <Fragment key={item.id}>{row(item)}</Fragment>)}
      </div>
    </>
  );
}
