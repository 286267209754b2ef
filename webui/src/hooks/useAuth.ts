// The optional access token: when any /api call answers 401 the app asks for it (TokenPrompt),
// stores it in the `mistudio_token` cookie only, and bumps `version` so everything retries.
import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import type { ReactNode } from 'react';

import { ApiError, apiGet, errorMessage, onUnauthorized, setAccessToken, tokenIsCookieSafe } from '../api/client';
import type { Health } from '../api/types';

export interface AuthApi {
  /** The server answered 401: requests pause until a token is given. */
  needsToken: boolean;
  /** Increments after a token was accepted; effects that talk to the API re-run on it. */
  version: number;
  /** Sets the cookie and checks it; resolves to an error sentence, or null when accepted. */
  submitToken: (token: string) => Promise<string | null>;
}

const AuthContext = createContext<AuthApi | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [needsToken, setNeedsToken] = useState(false);
  const [version, setVersion] = useState(0);

  useEffect(() => onUnauthorized(() => setNeedsToken(true)), []);

  const submitToken = useCallback(async (raw: string): Promise<string | null> => {
    const token = raw.trim();
    if (!token) return 'Enter the access token.';
    if (!tokenIsCookieSafe(token)) {
      return 'This token contains spaces or characters (" , ; \\) that cannot be sent in a cookie.';
    }
    setAccessToken(token);
    try {
      await apiGet<Health>('/api/health', { timeoutMs: 8000 });
    } catch (err) {
      if (err instanceof ApiError && err.isUnauthorized) return 'The appliance did not accept this token.';
      return `Could not check the token: ${errorMessage(err)}`;
    }
    setNeedsToken(false);
    setVersion((v) => v + 1);
    return null;
  }, []);

  const value = useMemo(() => ({ needsToken, version, submitToken }), [needsToken, version, submitToken]);
  return createElement(AuthContext.Provider, { value }, children);
}

export function useAuth(): AuthApi {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth must be used inside <AuthProvider>');
  return ctx;
}
