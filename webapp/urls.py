from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp.audits.signin import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm

# Both sign-in forms refuse sign-in after repeated failures (webapp.audits.signin).
admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("accounts/login/",
         auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
         name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("webapp.audits.urls")),
]
