from django.urls import path

from energy.views import AccountView, ConsumeView

urlpatterns = [
    path("api/energy/consume/", ConsumeView.as_view(), name="consume"),
    path("api/energy/accounts/<str:account_id>/", AccountView.as_view(), name="account"),
]
