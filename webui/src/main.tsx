import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

import App from './App';
import { ToastProvider } from './components/Toasts';
import { AuthProvider } from './hooks/useAuth';
import './index.css';

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <ToastProvider>
        <AuthProvider>
          <App />
        </AuthProvider>
      </ToastProvider>
    </StrictMode>,
  );
}
